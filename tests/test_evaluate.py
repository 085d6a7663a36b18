from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from featurekit.evaluate import (
    clustering_scores,
    evaluate,
    evaluate_features,
    format_table,
    knn_accuracy,
    knn_loo_accuracy,
    linear_probe_accuracy,
)
from featurekit.exceptions import InputError


def reference_knn_predict(train, train_labels, queries, k, temperature, exclude_self=False):
    """The InstDisc / DINO weighted vote, one query at a time in float64."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    classes = np.unique(train_labels)
    predictions = []
    for i, q in enumerate(queries):
        sims = train @ q
        candidates = [j for j in range(len(train)) if not (exclude_self and j == i)]
        nearest = sorted(candidates, key=lambda j: -sims[j])[:k]
        votes = {c: 0.0 for c in classes}
        for j in nearest:
            votes[train_labels[j]] += np.exp(sims[j] / temperature)
        predictions.append(max(classes, key=lambda c: (votes[c], -list(classes).index(c))))
    return np.array(predictions)


@pytest.fixture
def random_split():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(150, 8))
    test = rng.normal(size=(70, 8))
    # Labels tied to the first coordinate so accuracy is neither 0 nor 1.
    train_labels = (train[:, 0] > 0).astype(int) + (train[:, 1] > 0.5).astype(int) * 2
    test_labels = rng.integers(0, 4, size=70)
    test_labels[:40] = (test[:40, 0] > 0).astype(int) + (test[:40, 1] > 0.5).astype(int) * 2
    return train, train_labels, test, test_labels


@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_knn_matches_reference(random_split, k, temperature):
    train, train_labels, test, test_labels = random_split
    expected = np.mean(
        reference_knn_predict(train, train_labels, test, k, temperature) == test_labels
    )
    got = knn_accuracy(train, train_labels, test, test_labels, k=k, temperature=temperature)
    assert 0.2 < got < 1.0
    assert got == pytest.approx(expected)


def test_knn_chunking_does_not_change_the_result(random_split):
    train, train_labels, test, test_labels = random_split
    whole = knn_accuracy(train, train_labels, test, test_labels, batch_size=1024)
    assert knn_accuracy(train, train_labels, test, test_labels, batch_size=7) == whole


def test_knn_string_labels_and_unseen_test_label():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    test = np.array([[1.0, 0.05], [0.05, 1.0], [0.0, 1.0]])
    labels = ["cat", "cat", "dog", "dog"]
    # "eel" is never in the training set, so it can only be an error.
    assert knn_accuracy(train, labels, test, ["cat", "dog", "eel"], k=2) == pytest.approx(2 / 3)


def test_knn_k_larger_than_train_set_uses_all(random_split):
    train, train_labels, test, test_labels = random_split
    assert knn_accuracy(train, train_labels, test, test_labels, k=10_000) == knn_accuracy(
        train, train_labels, test, test_labels, k=len(train)
    )


def test_knn_tiny_temperature_is_one_nn_without_overflow(random_split):
    train, train_labels, test, test_labels = random_split
    got = knn_accuracy(train, train_labels, test, test_labels, k=20, temperature=1e-4)
    assert got == knn_accuracy(train, train_labels, test, test_labels, k=1)


def test_knn_is_cosine_so_scale_does_not_matter(random_split):
    train, train_labels, test, test_labels = random_split
    scaled = train * np.random.default_rng(1).uniform(0.1, 10, size=(len(train), 1))
    assert knn_accuracy(scaled, train_labels, test, test_labels) == knn_accuracy(
        train, train_labels, test, test_labels
    )


def test_knn_accepts_torch_tensors(random_split):
    train, train_labels, test, test_labels = random_split
    got = knn_accuracy(torch.tensor(train), train_labels, torch.tensor(test), test_labels)
    assert got == knn_accuracy(train, train_labels, test, test_labels)


def two_blobs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal([5, 0], 0.3, (n, 2)), rng.normal([0, 5], 0.3, (n, 2))])
    return x, np.repeat([0, 1], n)


def test_loo_on_separated_blobs_is_perfect():
    x, y = two_blobs()
    assert knn_loo_accuracy(x, y, k=5) == 1.0


def test_loo_excludes_self():
    # Points round a circle with alternating labels: each point's nearest
    # other point has the other label, while the point itself is nearest of all.
    angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y = np.arange(36) % 2
    assert knn_accuracy(x, y, x, y, k=1) == 1.0
    assert knn_loo_accuracy(x, y, k=1) == 0.0


def test_loo_counts_an_exact_duplicate():
    # Exclusion is by position: a duplicate of a sample is another sample.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    assert knn_loo_accuracy(x, [0, 0, 1, 1], k=1) == 1.0


@pytest.mark.parametrize("k", [1, 7])
def test_loo_matches_reference(random_split, k):
    train, train_labels, _, _ = random_split
    expected = np.mean(
        reference_knn_predict(train, train_labels, train, k, 0.07, exclude_self=True)
        == train_labels
    )
    assert knn_loo_accuracy(train, train_labels, k=k, batch_size=16) == pytest.approx(expected)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    return X_train, y_train, X_test, y_test


def test_linear_probe_on_digits(digits):
    assert linear_probe_accuracy(*digits) > 0.9


def test_evaluate_features_keys():
    x, y = two_blobs()
    result = evaluate_features(x, y, x, y, k=10)
    assert result == {"knn": 1.0, "linear_probe": 1.0, "nmi": 1.0, "ari": 1.0, "n_features": 2}


def test_evaluate_raw_and_pca(digits):
    X_train, y_train, X_test, y_test = digits
    images_train, images_test = X_train.reshape(-1, 8, 8), X_test.reshape(-1, 8, 8)
    pca = make_pipeline(
        FunctionTransformer(lambda x: x.reshape(len(x), -1)), PCA(16, random_state=0)
    ).fit(images_train)
    rows = evaluate({"raw": "raw", "pca16": pca}, images_train, y_train, images_test, y_test)
    assert [row["features"] for row in rows] == ["raw", "pca16"]
    assert [row["n_features"] for row in rows] == [64, 16]
    assert list(rows[0]) == ["features", "n_features", "knn", "linear_probe", "nmi", "ari"]
    assert rows[0]["knn"] == knn_accuracy(X_train, y_train, X_test, y_test)
    assert rows[0]["linear_probe"] > 0.9
    assert all(0.8 < row[metric] <= 1 for row in rows for metric in ("knn", "linear_probe"))


def test_evaluate_rejects_an_object_without_transform(digits):
    with pytest.raises(InputError, match=r"extractors\['bad'\].*transform"):
        evaluate({"bad": 3}, *digits)


def test_format_table():
    rows = [
        {"features": "raw", "n_features": 64, "knn": 0.93444, "linear_probe": 0.9},
        {"features": "simclr|proj", "n_features": 128, "knn": 1.0},
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1] == [
        " features     ", " n_features ", "    knn ", " linear_probe "
    ]
    assert lines[1] == "| :----------- | ---------: | -----: | -----------: |"
    assert "93.4%" in lines[2] and "90.0%" in lines[2] and "100.0%" in lines[3]
    assert "simclr\\|proj" in lines[3]
    assert lines[3].endswith("|              |")  # missing value left blank
    assert len({len(line) for line in lines}) == 1
    assert len(lines) == 4


def test_format_table_columns_and_other_values():
    rows = [{"features": "a", "loss": 0.123456, "knn_accuracy": 0.5, "n_features": 2}]
    table = format_table(rows, columns=["knn_accuracy", "loss"])
    assert table.splitlines()[0] == "| knn_accuracy |   loss |"
    assert table.splitlines()[2] == "|        50.0% | 0.1235 |"
    assert format_table([]) == ""


def test_input_errors(random_split):
    train, train_labels, test, test_labels = random_split
    with pytest.raises(InputError, match="train_labels has 149 entries"):
        knn_accuracy(train, train_labels[:-1], test, test_labels)
    with pytest.raises(InputError, match="must be 2-D"):
        knn_accuracy(train[:, 0], train_labels, test, test_labels)
    with pytest.raises(InputError, match="8 features but test_features has 3"):
        knn_accuracy(train, train_labels, test[:, :3], test_labels)
    with pytest.raises(InputError, match="k must be an integer >= 1"):
        knn_accuracy(train, train_labels, test, test_labels, k=0)
    with pytest.raises(InputError, match="temperature"):
        knn_accuracy(train, train_labels, test, test_labels, temperature=-1)
    with pytest.raises(InputError, match="batch_size"):
        knn_accuracy(train, train_labels, test, test_labels, batch_size=0)
    with pytest.raises(InputError, match="NaN"):
        knn_accuracy(np.full_like(train, np.nan), train_labels, test, test_labels)
    with pytest.raises(InputError, match="at least 2 samples"):
        knn_loo_accuracy(train[:1], train_labels[:1])
    with pytest.raises(InputError, match="labels has 3 entries"):
        knn_loo_accuracy(train, train_labels[:3])
    with pytest.raises(InputError, match="test_labels has 2 entries"):
        linear_probe_accuracy(train, train_labels, test, test_labels[:2])
    with pytest.raises(ValueError, match="empty"):
        evaluate_features(train[:0], train_labels[:0], test, test_labels)


def test_clustering_scores_match_sklearn_on_separated_and_random_labels():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    X, y = load_digits(return_X_y=True)
    got = clustering_scores(X, y, random_state=0)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    clusters = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(unit)
    assert got == {"nmi": pytest.approx(normalized_mutual_info_score(y, clusters)),
                   "ari": pytest.approx(adjusted_rand_score(y, clusters))}
    assert got["nmi"] > 0.6  # digits cluster well
    shuffled = clustering_scores(X, np.random.default_rng(0).permutation(y))
    assert abs(shuffled["ari"]) < 0.05 and shuffled["nmi"] < 0.05
    with pytest.raises(ValueError, match="n_clusters"):
        clustering_scores(X[:5], y[:5], n_clusters=6)


def test_format_table_prints_clustering_scores_with_three_decimals():
    table = format_table([{"features": "a", "nmi": 0.5321, "ari": 0.38934}])
    assert "0.532" in table and "0.389" in table and "0.3893" not in table
