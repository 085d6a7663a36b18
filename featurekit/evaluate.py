"""Measure how good a set of features is: weighted kNN and a linear probe.

Both are the standard read-outs of self-supervised representation learning.
The kNN classifier needs no training, so it is cheap enough to run every few
epochs as online monitoring; the linear probe is the usual headline number.

References
----------
.. [1] Wu, Xiong, Yu and Lin, "Unsupervised Feature Learning via
   Non-Parametric Instance Discrimination", CVPR 2018.
.. [2] Caron et al., "Emerging Properties in Self-Supervised Vision
   Transformers" (DINO), ICCV 2021.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featurekit.exceptions import InputError

__all__ = [
    "evaluate",
    "clustering_scores",
    "evaluate_features",
    "format_table",
    "knn_accuracy",
    "knn_loo_accuracy",
    "linear_probe_accuracy",
    "parts_table",
    "PartsTable",
]

# Columns that hold accuracies in [0, 1]; `format_table` prints them as percentages.
_ACCURACY_COLUMNS = frozenset({"knn", "knn_loo", "linear_probe", "accuracy"})
# Scores in [-1, 1] (clustering agreement); printed with three decimals.
_SCORE_COLUMNS = frozenset({"nmi", "ari"})


def knn_accuracy(
    train_features: ArrayLike | torch.Tensor,
    train_labels: ArrayLike,
    test_features: ArrayLike | torch.Tensor,
    test_labels: ArrayLike,
    *,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 1024,
) -> float:
    """Accuracy of a weighted k-nearest-neighbour classifier on cosine similarity.

    Features are L2-normalised; each test sample takes its ``k`` most similar
    training samples, and every neighbour votes for its class with weight
    ``exp(similarity / temperature)``. The class with the largest summed
    weight wins (ties go to the class that sorts first). This is the
    protocol of InstDisc [1]_ and DINO [2]_.

    Parameters
    ----------
    train_features : array-like of shape (n_train, n_features)
        Features of the labelled reference set. A torch tensor is used on its
        own device, so features still on a GPU are not copied back.
    train_labels : array-like of shape (n_train,)
        Labels of any type ``np.unique`` can sort (ints, strings).
    test_features : array-like of shape (n_test, n_features)
        Features of the samples to classify.
    test_labels : array-like of shape (n_test,)
        True labels of the test samples. A label absent from ``train_labels``
        can never be predicted, so it counts as an error.
    k : int, default=20
        Number of neighbours; more than ``n_train`` means all of them.
    temperature : float, default=0.07
        Softness of the vote; a small value approaches plain 1-NN.
    batch_size : int, default=1024
        Test samples per similarity matmul, which bounds memory to
        ``batch_size * n_train`` floats.

    Returns
    -------
    float
        Fraction of test samples classified correctly.

    References
    ----------
    .. [1] Wu et al., "Unsupervised Feature Learning via Non-Parametric
       Instance Discrimination", CVPR 2018.
    .. [2] Caron et al., "Emerging Properties in Self-Supervised Vision
       Transformers", ICCV 2021.

    Examples
    --------
    >>> import numpy as np
    >>> train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> test = np.array([[1.0, 0.2], [0.2, 1.0]])
    >>> knn_accuracy(train, ["a", "a", "b", "b"], test, ["a", "b"], k=2)
    1.0
    """
    _check_knn_params(k, temperature, batch_size)
    train = _as_features(train_features, "train_features")
    test = _as_features(test_features, "test_features").to(train.device)
    train_labels = _as_labels(train_labels, len(train), "train_labels", "train_features")
    test_labels = _as_labels(test_labels, len(test), "test_labels", "test_features")
    if train.shape[1] != test.shape[1]:
        raise InputError(
            f"train_features has {train.shape[1]} features but test_features has "
            f"{test.shape[1]}; both must come from the same extractor."
        )
    classes, train_codes = np.unique(train_labels, return_inverse=True)
    predicted = _knn_predict(
        train, train_codes, len(classes), test, k, temperature, batch_size, leave_one_out=False
    )
    return float(np.mean(classes[predicted] == test_labels))


def knn_loo_accuracy(
    features: ArrayLike | torch.Tensor,
    labels: ArrayLike,
    *,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 1024,
) -> float:
    """Leave-one-out accuracy of the weighted kNN classifier on one labelled set.

    Every sample is classified by its ``k`` most similar *other* samples, as
    in :func:`knn_accuracy`. This needs labels for one set only, which suits
    online monitoring of self-supervised training on a small ``eval_set``.
    A sample is excluded by position, so an exact duplicate of it still votes.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features of the labelled set, at least two samples. A torch tensor is
        used on its own device.
    labels : array-like of shape (n_samples,)
        Labels of any type ``np.unique`` can sort.
    k : int, default=20
        Number of neighbours; more than ``n_samples - 1`` means all others.
    temperature : float, default=0.07
        Softness of the vote.
    batch_size : int, default=1024
        Samples per similarity matmul.

    Returns
    -------
    float
        Fraction of samples their neighbours classify correctly.

    See Also
    --------
    knn_accuracy : The same classifier with a separate test set.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> knn_loo_accuracy(x, [0, 0, 1, 1], k=1)
    1.0
    """
    _check_knn_params(k, temperature, batch_size)
    feats = _as_features(features, "features")
    labels = _as_labels(labels, len(feats), "labels", "features")
    if len(feats) < 2:
        raise InputError(
            f"Leave-one-out kNN needs at least 2 samples; got {len(feats)}."
        )
    classes, codes = np.unique(labels, return_inverse=True)
    predicted = _knn_predict(
        feats, codes, len(classes), feats, k, temperature, batch_size, leave_one_out=True
    )
    return float(np.mean(predicted == codes))


def linear_probe_accuracy(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    C: float = 1.0,
    max_iter: int = 2000,
) -> float:
    """Test accuracy of a logistic regression trained on standardised features.

    Parameters
    ----------
    train_features : array-like of shape (n_train, n_features)
        Features to fit the probe on.
    train_labels : array-like of shape (n_train,)
        Their labels.
    test_features : array-like of shape (n_test, n_features)
        Features to score the probe on.
    test_labels : array-like of shape (n_test,)
        Their labels.
    C : float, default=1.0
        Inverse L2 regularisation strength of ``LogisticRegression``.
    max_iter : int, default=2000
        Iteration limit of the solver.

    Returns
    -------
    float
        Fraction of test samples the probe classifies correctly.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [0.2], [1.0], [1.2]])
    >>> linear_probe_accuracy(x, [0, 0, 1, 1], x, [0, 0, 1, 1])
    1.0
    """
    train = _as_numpy_features(train_features, "train_features")
    test = _as_numpy_features(test_features, "test_features")
    train_labels = _as_labels(train_labels, len(train), "train_labels", "train_features")
    test_labels = _as_labels(test_labels, len(test), "test_labels", "test_features")
    if train.shape[1] != test.shape[1]:
        raise InputError(
            f"train_features has {train.shape[1]} features but test_features has "
            f"{test.shape[1]}; both must come from the same extractor."
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(train, train_labels)
    return float(probe.score(test, test_labels))


def clustering_scores(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    n_clusters: int | None = None,
    random_state: int = 0,
) -> dict[str, float]:
    """How well k-means on the features recovers the labels: NMI and ARI.

    Features are L2-normalized first (the cosine geometry the kNN read-out
    uses), then clustered by k-means with ``n_clusters`` (default: the number
    of distinct labels) and 10 initializations; the clusters are compared with
    the labels by normalized mutual information and the adjusted Rand index.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features to cluster.
    labels : array-like of shape (n_samples,)
        The true classes.
    n_clusters : int or None, default=None
        Number of clusters; None uses the number of distinct labels.
    random_state : int, default=0
        Seed of k-means.

    Returns
    -------
    dict
        ``{"nmi": float, "ari": float}``; both 1.0 for a perfect clustering,
        NMI about 0 and ARI about 0 for a random one.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> clustering_scores(x, [0, 0, 1, 1])
    {'nmi': 1.0, 'ari': 1.0}
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _as_numpy_features(features, "features")
    labels = _as_labels(labels, len(x), "labels", "features")
    k = len(np.unique(labels)) if n_clusters is None else int(n_clusters)
    if not 1 <= k <= len(x):
        raise InputError(f"n_clusters must be between 1 and n_samples={len(x)}; got {k}")
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    clusters = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit_predict(x)
    return {"nmi": float(normalized_mutual_info_score(labels, clusters)),
            "ari": float(adjusted_rand_score(labels, clusters))}


def evaluate_features(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    k: int = 20,
    temperature: float = 0.07,
    C: float = 1.0,
    max_iter: int = 2000,
) -> dict[str, Any]:
    """The three read-outs of one pair of feature matrices: kNN, linear probe, and
    the clustering of the test features (:func:`clustering_scores`).

    Parameters
    ----------
    train_features : array-like of shape (n_train, n_features)
        Features of the labelled reference / probe training set.
    train_labels : array-like of shape (n_train,)
        Their labels.
    test_features : array-like of shape (n_test, n_features)
        Features to score.
    test_labels : array-like of shape (n_test,)
        Their labels.
    k, temperature : int, float
        Passed to :func:`knn_accuracy`.
    C, max_iter : float, int
        Passed to :func:`linear_probe_accuracy`.

    Returns
    -------
    dict
        ``{"knn": float, "linear_probe": float, "nmi": float, "ari": float,
        "n_features": int}``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> evaluate_features(x, [0, 0, 1, 1], x, [0, 0, 1, 1], k=1)
    {'knn': 1.0, 'linear_probe': 1.0, 'nmi': 1.0, 'ari': 1.0, 'n_features': 2}
    """
    train = _as_numpy_features(train_features, "train_features")
    test = _as_numpy_features(test_features, "test_features")
    return {
        "knn": knn_accuracy(train, train_labels, test, test_labels, k=k, temperature=temperature),
        "linear_probe": linear_probe_accuracy(
            train, train_labels, test, test_labels, C=C, max_iter=max_iter
        ),
        **clustering_scores(test, test_labels),
        "n_features": int(train.shape[1]),
    }


def evaluate(
    extractors: Mapping[str, object],
    X_train: ArrayLike,
    y_train: ArrayLike,
    X_test: ArrayLike,
    y_test: ArrayLike,
    **kw: Any,
) -> list[dict[str, Any]]:
    """Compare several feature extractors (and raw inputs) on one split.

    Parameters
    ----------
    extractors : mapping of str to object
        Name to a fitted sklearn-style transformer, or to the string
        ``"raw"`` for the flattened inputs as a baseline.
    X_train, X_test : array-like of shape (n_samples, ...)
        Inputs, in whatever form the extractors accept.
    y_train, y_test : array-like of shape (n_samples,)
        Labels.
    **kw
        Passed to :func:`evaluate_features` (``k``, ``temperature``, ``C``,
        ``max_iter``).

    Returns
    -------
    list of dict
        One row per extractor, in the mapping's order:
        ``{"features": name, "n_features": d, "knn": acc, "linear_probe": acc,
        "nmi": score, "ari": score}``.

    See Also
    --------
    format_table : Print the rows.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> X, y = load_digits(return_X_y=True)
    >>> pca = PCA(n_components=16, random_state=0).fit(X[:1000])
    >>> rows = evaluate({"raw": "raw", "pca16": pca}, X[:1000], y[:1000], X[1000:], y[1000:])
    >>> [(r["features"], r["n_features"]) for r in rows]
    [('raw', 64), ('pca16', 16)]
    """
    rows = []
    for name, extractor in extractors.items():
        if isinstance(extractor, str) and extractor == "raw":
            train, test = _flatten(X_train), _flatten(X_test)
        elif callable(getattr(extractor, "transform", None)):
            train, test = extractor.transform(X_train), extractor.transform(X_test)
        else:
            raise InputError(
                f"extractors[{name!r}] must be the string 'raw' or a fitted transformer "
                f"with a transform method; got {type(extractor).__name__}."
            )
        scores = evaluate_features(train, y_train, test, y_test, **kw)
        rows.append(
            {
                "features": name,
                "n_features": scores["n_features"],
                "knn": scores["knn"],
                "linear_probe": scores["linear_probe"],
                "nmi": scores["nmi"],
                "ari": scores["ari"],
            }
        )
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Render rows as an aligned markdown pipe table.

    The text lines up in a terminal and renders as a table when pasted into
    markdown. Accuracy columns (``knn``, ``knn_loo``, ``linear_probe``,
    ``accuracy`` and any name ending in ``_accuracy``) are printed as
    percentages with one decimal; numeric columns are right-aligned; a
    missing value is left blank.

    Parameters
    ----------
    rows : sequence of mapping
        The rows, e.g. from :func:`evaluate`.
    columns : sequence of str, optional
        Columns to show, in order. By default every key, in order of first
        appearance.

    Returns
    -------
    str
        The table, one line per row after the header and separator lines,
        without a trailing newline; empty when there is nothing to show.

    Examples
    --------
    >>> print(format_table([{"features": "raw", "n_features": 64, "knn": 0.9344}]))
    | features | n_features |   knn |
    | :------- | ---------: | ----: |
    | raw      |         64 | 93.4% |
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    columns = [str(c) for c in columns]
    if not columns:
        return ""
    cells = [[_format_cell(col, row.get(col)) for col in columns] for row in rows]
    numeric = [
        all(_is_number(row.get(col)) for row in rows if row.get(col) is not None)
        and any(row.get(col) is not None for row in rows)
        for col in columns
    ]
    headers = [_escape(c) for c in columns]
    widths = [
        max([len(h), 4, *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric)
        )
        return "| " + " | ".join(padded) + " |"

    separator = "| " + " | ".join(
        "-" * (w - 1) + ":" if right else ":" + "-" * (w - 1) for w, right in zip(widths, numeric)
    ) + " |"
    return "\n".join([line(headers), separator, *(line(c) for c in cells)])


def _knn_predict(
    train: torch.Tensor,
    train_codes: np.ndarray,
    n_classes: int,
    queries: torch.Tensor,
    k: int,
    temperature: float,
    batch_size: int,
    *,
    leave_one_out: bool,
) -> np.ndarray:
    """Class codes the weighted kNN vote gives each query row."""
    train = torch.nn.functional.normalize(train, dim=1)
    queries = torch.nn.functional.normalize(queries, dim=1)
    codes = torch.as_tensor(train_codes, dtype=torch.int64, device=train.device)
    k = min(k, len(train) - 1 if leave_one_out else len(train))
    predictions = []
    with torch.no_grad():
        for start in range(0, len(queries), batch_size):
            chunk = queries[start : start + batch_size]
            sim = chunk @ train.T
            if leave_one_out:
                rows = torch.arange(len(chunk), device=sim.device)
                sim[rows, rows + start] = -math.inf
            top_sim, top_idx = sim.topk(k, dim=1)
            # Subtracting each row's best similarity leaves the argmax unchanged
            # but keeps exp() finite for any temperature.
            weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)
            votes = torch.zeros(len(chunk), n_classes, dtype=weights.dtype, device=sim.device)
            votes.scatter_add_(1, codes[top_idx], weights)
            predictions.append(votes.argmax(dim=1).cpu())
    return torch.cat(predictions).numpy()


def _check_knn_params(k: int, temperature: float, batch_size: int) -> None:
    for name, value in (("k", k), ("batch_size", batch_size)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be an integer >= 1; got {value!r}.")
    if not isinstance(temperature, numbers.Real) or not 0 < temperature < math.inf:
        raise InputError(f"temperature must be a float in (0, inf); got {temperature!r}.")


def _as_features(x: ArrayLike | torch.Tensor, name: str) -> torch.Tensor:
    """A float32 tensor of shape (n_samples, n_features), checked."""
    if isinstance(x, torch.Tensor):
        tensor = x.detach().to(torch.float32)
    else:
        tensor = torch.from_numpy(_as_numpy_features(x, name))
    _check_matrix(tuple(tensor.shape), name)
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name} contains NaN or infinite values.")
    return tensor


def _as_numpy_features(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        array = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric array; {exc}") from exc
    _check_matrix(array.shape, name)
    return array


def _check_matrix(shape: tuple[int, ...], name: str) -> None:
    if len(shape) != 2:
        raise InputError(
            f"{name} must be 2-D of shape (n_samples, n_features); got shape {shape}."
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{name} is empty (shape {shape}).")


def _as_labels(labels: ArrayLike, n_samples: int, name: str, features_name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InputError(f"{name} must be 1-D; got shape {array.shape}.")
    if len(array) != n_samples:
        raise InputError(
            f"{name} has {len(array)} entries but {features_name} has {n_samples} rows."
        )
    return array


def _flatten(x: ArrayLike) -> np.ndarray:
    array = np.asarray(x)
    return array.reshape(len(array), -1).astype(np.float32)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _format_cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    is_accuracy = column in _ACCURACY_COLUMNS or column.endswith("_accuracy")
    if is_accuracy and _is_number(value) and math.isfinite(value):
        return f"{100 * value:.1f}%"
    if column in _SCORE_COLUMNS and _is_number(value) and math.isfinite(value):
        return f"{value:.3f}"
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:.4g}"
    return _escape(str(value))


def _escape(text: str) -> str:
    # A bare pipe would end the markdown cell early.
    return text.replace("|", "\\|")


class PartsTable:
    """What each part knows: linear-probe accuracy per (features, factor), with chance.

    Made by :func:`parts_table`. ``str(table)`` (or :meth:`to_markdown`) is a
    markdown table with one row per feature set, one column per factor, and a
    last row of chance levels.

    Attributes
    ----------
    rows : list of dict
        ``{"features": name, "n_features": int, factor: accuracy, ...}``, in order.
    chance : dict of str to float
        Per factor, the majority-class rate on the test labels: the accuracy of
        always guessing the commonest test class (``1 / n_classes`` when the
        classes are balanced).
    """

    def __init__(self, rows: list[dict[str, Any]], chance: dict[str, float]):
        self.rows = rows
        self.chance = chance

    @property
    def factors(self) -> list[str]:
        """The factor names, in order."""
        return list(self.chance)

    def accuracy(self, features: str, factor: str) -> float:
        """The probe accuracy of feature set ``features`` on ``factor``."""
        for row in self.rows:
            if row["features"] == features:
                if factor not in self.chance:
                    raise KeyError(f"no factor {factor!r}; the factors are {self.factors}")
                return row[factor]
        raise KeyError(f"no features {features!r}; the rows are "
                       f"{[row['features'] for row in self.rows]}")

    def to_markdown(self) -> str:
        """The table as markdown, accuracies with three decimals, chance last."""
        shown = [{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
                 for row in self.rows]
        shown.append({"features": "chance (majority class)",
                      **{f: round(v, 3) for f, v in self.chance.items()}})
        return format_table(shown, ["features", "n_features", *self.factors])

    def __str__(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return f"PartsTable({len(self.rows)} feature sets x factors {self.factors})"


def parts_table(
    estimator_or_features: Any,
    X_train: Any = None,
    X_test: Any = None,
    *,
    factors_train: Mapping[str, ArrayLike],
    factors_test: Mapping[str, ArrayLike],
    baselines: Mapping[str, tuple[ArrayLike, ArrayLike]] | None = None,
) -> PartsTable:
    """What each feature part knows about each factor: linear-probe accuracies.

    For every feature part (a fitted multi-part estimator's ``content`` and
    ``style``, say) and every factor label (digit, speaker, domain), one
    probe with one fixed protocol: ``StandardScaler`` then
    ``LogisticRegression(C=1, max_iter=2000)`` (:func:`linear_probe_accuracy`),
    trained on the train features, scored on the test features. The protocol
    has no knobs on purpose, so that a disentanglement target is met by the
    features, never by tuning the probe. Chance is the majority-class rate of
    each factor on the test labels.

    Parameters
    ----------
    estimator_or_features : fitted FeatureExtractor or mapping
        A fitted estimator: each of its ``feature_parts_`` is a row, computed
        by ``transform`` on ``X_train`` and ``X_test`` (whatever its ``part``
        parameter; it is restored). Or a mapping ``{name: (train_features,
        test_features)}`` of precomputed feature matrices.
    X_train, X_test : inputs, optional
        The estimator's train and test inputs (not used with a mapping).
    factors_train, factors_test : mapping of str to array-like
        ``{factor: labels}`` for the train and the test samples, the same
        factors in both.
    baselines : mapping, optional
        More rows, ``{name: (train_features, test_features)}``, after the
        parts (raw pixels, an untrained model...).

    Returns
    -------
    PartsTable
        ``str(table)`` is a markdown table; ``table.accuracy(part, factor)``
        one number; ``table.rows`` and ``table.chance`` the data.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    >>> parts = {"knows_a": a[:, None] + 0.1 * rng.normal(size=(200, 1)),
    ...          "knows_b": b[:, None] + 0.1 * rng.normal(size=(200, 1))}
    >>> table = parts_table({k: (v[:100], v[100:]) for k, v in parts.items()},
    ...                     factors_train={"a": a[:100], "b": b[:100]},
    ...                     factors_test={"a": a[100:], "b": b[100:]})
    >>> table.accuracy("knows_a", "a"), table.accuracy("knows_b", "b")
    (1.0, 1.0)
    """
    if set(factors_train) != set(factors_test) or not factors_train:
        raise InputError(f"factors_train and factors_test must name the same factors (at least "
                         f"one); got {sorted(factors_train)} and {sorted(factors_test)}")
    if isinstance(estimator_or_features, Mapping):
        sets = dict(estimator_or_features)
    else:
        sets = _estimator_parts(estimator_or_features, X_train, X_test)
    sets.update(baselines or {})
    factors = list(factors_train)
    chance = {}
    for f in factors:
        _, counts = np.unique(np.asarray(factors_test[f]), return_counts=True)
        chance[f] = float(counts.max() / counts.sum())
    rows = []
    for name, pair in sets.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise InputError(f"features {name!r} must be a pair (train_features, test_features)")
        train = _as_numpy_features(pair[0], f"{name} train features")
        test = _as_numpy_features(pair[1], f"{name} test features")
        row: dict[str, Any] = {"features": str(name), "n_features": int(train.shape[1])}
        for f in factors:
            row[f] = linear_probe_accuracy(train, factors_train[f], test, factors_test[f])
        rows.append(row)
    return PartsTable(rows, chance)


def _estimator_parts(est: Any, X_train: Any, X_test: Any) -> dict[str, tuple]:
    """Each part of a fitted multi-part estimator, on ``X_train`` and ``X_test``."""
    parts = getattr(est, "feature_parts_", None)
    if parts is None or not hasattr(est, "transform"):
        raise InputError("parts_table takes a fitted featurekit estimator (with feature_parts_) "
                         "or a mapping {name: (train_features, test_features)}; got "
                         f"{type(est).__name__}")
    if X_train is None or X_test is None:
        raise InputError("parts_table needs X_train and X_test with an estimator")
    part = est.get_params()["part"]
    try:
        est.set_params(part=None)
        train, test = est.transform(X_train), est.transform(X_test)
    finally:
        est.set_params(part=part)
    return {name: (train[:, cols], test[:, cols]) for name, cols in parts.items()}
