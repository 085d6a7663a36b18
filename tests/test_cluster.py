"""FaissKMeans: sklearn's estimator checks, agreement with KMeans on real digits,
spherical geometry, determinism, n_init, input kinds and error messages."""

from __future__ import annotations

import pickle
import time

import faiss
import h5py
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import featurekit.cluster as cluster_module
from featurekit.cluster import FaissKMeans
from featurekit.exceptions import InputError, NotFittedError, ParameterError


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@parametrize_with_checks(
    [FaissKMeans(random_state=0), FaissKMeans(spherical=True, random_state=0)]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- agreement with sklearn.cluster.KMeans -----------------------------------
@pytest.mark.parametrize("seed", [0, 3])
def test_matches_sklearn_kmeans_on_digits(digits, seed):
    X, y = digits
    start = time.perf_counter()
    sk = KMeans(n_clusters=10, n_init=10, random_state=seed).fit(X)
    sk_time = time.perf_counter() - start
    start = time.perf_counter()
    fk = FaissKMeans(n_clusters=10, n_init=10, random_state=seed).fit(X)
    fk_time = time.perf_counter() - start
    ratio = fk.inertia_ / sk.inertia_
    ari = adjusted_rand_score(sk.labels_, fk.labels_)
    nmi_sk = normalized_mutual_info_score(y, sk.labels_)
    nmi_fk = normalized_mutual_info_score(y, fk.labels_)
    print(f"seed {seed}: inertia ratio {ratio:.4f}, ARI vs KMeans {ari:.3f}, NMI KMeans "
          f"{nmi_sk:.3f} FaissKMeans {nmi_fk:.3f}, time ratio {fk_time / sk_time:.2f}")
    # Seed 3 lands in a local optimum 0.4% above KMeans's (ARI 0.81), so the
    # bounds are what every seed meets, not what the best one does.
    assert 0.99 < ratio < 1.01
    assert ari > 0.75
    assert abs(nmi_fk - nmi_sk) < 0.04
    assert fk.cluster_centers_.dtype == np.float32
    assert fk.cluster_centers_.shape == (10, 64)
    assert fk.n_features_in_ == 64
    assert 1 <= fk.n_iter_ <= 25


def test_fitted_quantities_are_exact(digits):
    X, _ = digits
    km = FaissKMeans(n_clusters=10, random_state=0).fit(X)
    x64, centers = X.astype(np.float64), km.cluster_centers_.astype(np.float64)
    distances = np.sqrt(((x64[:, None, :] - centers[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(km.labels_, distances.argmin(1))
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    np.testing.assert_allclose(km.inertia_, (distances.min(1) ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(km.transform(X), distances, rtol=1e-4, atol=1e-3)
    assert km.transform(X).dtype == np.float32
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-9)
    # Each center is the mean of its samples: the last Lloyd step was an update.
    for k in range(10):
        np.testing.assert_allclose(centers[k], x64[km.labels_ == k].mean(0), atol=1e-3)


def test_spherical_is_cosine_kmeans(digits):
    X, y = digits
    km = FaissKMeans(n_clusters=10, spherical=True, n_init=3, random_state=0).fit(X)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0, atol=1e-5)
    cosine = unit(X.astype(np.float64)) @ km.cluster_centers_.T.astype(np.float64)
    np.testing.assert_array_equal(km.labels_, cosine.argmax(1))
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    # Scaling rows changes no cosine, so no label.
    np.testing.assert_array_equal(km.predict(X * np.arange(1, len(X) + 1)[:, None]), km.labels_)
    np.testing.assert_allclose(km.inertia_, (2 - 2 * cosine.max(1)).sum(), rtol=1e-5)
    np.testing.assert_allclose(km.transform(X), np.sqrt(np.clip(2 - 2 * cosine, 0, None)),
                               atol=1e-3)
    sk = KMeans(n_clusters=10, n_init=3, random_state=0).fit(unit(X))
    ari = adjusted_rand_score(sk.labels_, km.labels_)
    nmi_sk = normalized_mutual_info_score(y, sk.labels_)
    nmi_fk = normalized_mutual_info_score(y, km.labels_)
    print(f"spherical: ARI vs KMeans on normalized rows {ari:.3f}, NMI {nmi_sk:.3f} / {nmi_fk:.3f}")
    assert ari > 0.8
    assert abs(nmi_fk - nmi_sk) < 0.04


# -- seeds, restarts, stopping, subsampling ----------------------------------
def test_same_random_state_same_result_and_different_differs(digits):
    X, _ = digits
    a = FaissKMeans(n_clusters=10, n_init=2, random_state=7).fit(X)
    b = FaissKMeans(n_clusters=10, n_init=2, random_state=7).fit(X)
    c = FaissKMeans(n_clusters=10, n_init=2, random_state=8).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_ and a.n_iter_ == b.n_iter_
    assert not np.array_equal(a.cluster_centers_, c.cluster_centers_)


def test_n_init_keeps_the_run_with_lowest_inertia(digits, monkeypatch):
    X, _ = digits
    seen = []
    inertia = cluster_module._inertia

    def spy(x, centers, labels):
        seen.append((inertia(x, centers, labels), centers.copy()))
        return seen[-1][0]

    monkeypatch.setattr(cluster_module, "_inertia", spy)
    km = FaissKMeans(n_clusters=10, n_init=6, random_state=0).fit(X)
    assert len(seen) == 6
    assert len({round(value, 3) for value, _ in seen}) > 1, "runs should differ"
    best_value, best_centers = min(seen, key=lambda run: run[0])
    assert km.inertia_ == best_value
    np.testing.assert_array_equal(km.cluster_centers_, best_centers)
    # The first run's seed is n_init=1's seed, so more runs never do worse.
    single = FaissKMeans(n_clusters=10, n_init=1, random_state=0).fit(X)
    assert single.inertia_ == seen[0][0]


@pytest.mark.skipif(not hasattr(faiss.ClusteringParameters(), "early_stop_threshold"),
                    reason="this faiss has no early stopping")
def test_tol_stops_early(digits):
    X, _ = digits
    exact = FaissKMeans(n_clusters=10, max_iter=100, random_state=0).fit(X)
    loose = FaissKMeans(n_clusters=10, max_iter=100, tol=0.01, random_state=0).fit(X)
    assert loose.n_iter_ < exact.n_iter_ < 100
    assert loose.inertia_ >= exact.inertia_


def test_max_points_per_centroid_subsamples(digits):
    X, _ = digits
    everything = FaissKMeans(n_clusters=10, max_points_per_centroid=None, random_state=0).fit(X)
    roomy = FaissKMeans(n_clusters=10, max_points_per_centroid=180, random_state=0).fit(X)
    sampled = FaissKMeans(n_clusters=10, max_points_per_centroid=5, random_state=0).fit(X)
    np.testing.assert_array_equal(everything.cluster_centers_, roomy.cluster_centers_)
    assert not np.array_equal(everything.cluster_centers_, sampled.cluster_centers_)
    assert sampled.labels_.shape == (len(X),)
    assert sampled.inertia_ > everything.inertia_


# -- inputs --------------------------------------------------------------------
def test_float32_input_is_not_copied(digits, monkeypatch):
    X, _ = digits
    trained_on = []
    train = faiss.Kmeans.train

    def spy(self, x, *args, **kwargs):
        trained_on.append(x)
        return train(self, x, *args, **kwargs)

    monkeypatch.setattr(faiss.Kmeans, "train", spy)
    FaissKMeans(n_clusters=10, random_state=0).fit(X)
    tensor = torch.from_numpy(X.copy())
    FaissKMeans(n_clusters=10, random_state=0).fit(tensor)
    assert np.shares_memory(trained_on[0], X)
    assert np.shares_memory(trained_on[1], tensor.numpy())


@pytest.mark.parametrize("kind", ["float64", "tensor", "strided_tensor", "h5_float32",
                                  "h5_float16"])
def test_other_inputs_give_the_numpy_result(digits, kind, tmp_path):
    X, _ = digits
    X = X[:600]
    reference = FaissKMeans(n_clusters=10, random_state=0).fit(X)
    with h5py.File(tmp_path / "feats.h5", "w") as f:
        f["f32"] = X
        f["f16"] = X.astype(np.float16)  # digits are integers 0..16, exact in float16
        inputs = {
            "float64": X.astype(np.float64),
            "tensor": torch.from_numpy(X.astype(np.float64)).requires_grad_(),
            "strided_tensor": torch.from_numpy(np.ascontiguousarray(X.T)).T,
            "h5_float32": f["f32"],
            "h5_float16": f["f16"],
        }
        km = FaissKMeans(n_clusters=10, random_state=0).fit(inputs[kind])
        np.testing.assert_array_equal(km.cluster_centers_, reference.cluster_centers_)
        np.testing.assert_array_equal(km.predict(inputs[kind]), reference.labels_)


def test_pickle_and_clone(digits):
    X, _ = digits
    km = FaissKMeans(n_clusters=10, spherical=True, random_state=0).fit(X)
    restored = pickle.loads(pickle.dumps(km))
    np.testing.assert_array_equal(restored.predict(X), km.labels_)
    np.testing.assert_array_equal(restored.transform(X[:5]), km.transform(X[:5]))
    fresh = clone(km)
    assert fresh.get_params() == km.get_params()
    assert not hasattr(fresh, "cluster_centers_")


def test_feature_names_and_pandas_output(digits):
    pd = pytest.importorskip("pandas")
    X, _ = digits
    km = FaissKMeans(n_clusters=3, random_state=0).set_output(transform="pandas").fit(X)
    out = km.transform(X[:4])
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["faisskmeans0", "faisskmeans1", "faisskmeans2"]
    assert list(km.get_feature_names_out()) == list(out.columns)


def test_cuda_without_faiss_gpu_warns_and_runs_on_cpu(digits, monkeypatch):
    monkeypatch.setattr(cluster_module, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    X, _ = digits
    with pytest.warns(UserWarning, match="no GPU support.*faiss-gpu"):
        km = FaissKMeans(n_clusters=3, device="cuda", random_state=0).fit(X[:100])
    assert km.labels_.shape == (100,)


@pytest.mark.skipif(faiss.get_num_gpus() == 0 or not torch.cuda.is_available(),
                    reason="needs a CUDA GPU and faiss-gpu")
def test_gpu_matches_cpu(digits):
    X, _ = digits
    cpu = FaissKMeans(n_clusters=10, random_state=0, device="cpu").fit(X)
    gpu = FaissKMeans(n_clusters=10, random_state=0, device="cuda").fit(X)
    assert adjusted_rand_score(cpu.labels_, gpu.labels_) > 0.95
    assert gpu.inertia_ == pytest.approx(cpu.inertia_, rel=1e-3)
    np.testing.assert_array_equal(gpu.predict(X), gpu.labels_)


# -- errors ----------------------------------------------------------------------
def test_fewer_samples_than_clusters_names_both_and_the_fix():
    with pytest.raises(InputError, match=r"n_clusters=5 .*n_samples=3.*n_clusters <= 3"):
        FaissKMeans(n_clusters=5).fit(np.ones((3, 2)))


@pytest.mark.parametrize("bad, found", [(np.nan, "1 NaN"), (np.inf, "1 infinite"),
                                        (1e39, "1 infinite")])
def test_non_finite_input_is_refused_in_fit_and_predict(bad, found):
    X = np.arange(20, dtype=np.float64).reshape(10, 2)
    X[4, 1] = bad
    with pytest.raises(InputError, match=f"X contains {found} value.*in 1 of 10 rows"):
        FaissKMeans(n_clusters=2).fit(X)
    km = FaissKMeans(n_clusters=2, random_state=0).fit(np.arange(20.0).reshape(10, 2))
    with pytest.raises(InputError, match=found):
        km.predict(X)


def test_empty_input_is_refused():
    with pytest.raises(InputError, match=r"0 sample\(s\)"):
        FaissKMeans(n_clusters=2).fit(np.empty((0, 4)))
    with pytest.raises(InputError, match=r"0 feature\(s\)"):
        FaissKMeans(n_clusters=2).fit(np.empty((4, 0)))


def test_wrong_feature_count_in_predict(digits):
    X, _ = digits
    km = FaissKMeans(n_clusters=3, random_state=0).fit(X)
    for verb in (km.predict, km.transform, km.score):
        with pytest.raises(InputError, match="X has 8 features, but FaissKMeans is expecting 64"):
            verb(X[:, :8])


@pytest.mark.parametrize("verb", ["predict", "transform", "score"])
def test_use_before_fit(verb):
    with pytest.raises(NotFittedError, match="not fitted yet. Call 'fit'") as info:
        getattr(FaissKMeans(), verb)(np.ones((3, 2)))
    assert isinstance(info.value, SkNotFittedError)


@pytest.mark.parametrize("params, message", [
    ({"n_clusters": 0}, "The 'n_clusters' parameter of FaissKMeans must be an int in the range "
                        r"\[1, inf\). Got 0 instead."),
    ({"n_init": 1.5}, "The 'n_init' parameter of FaissKMeans must be an int"),
    ({"tol": 2.0}, r"The 'tol' parameter of FaissKMeans must be a float in the range \[0.0, 1.0\]"),
    ({"spherical": "yes"}, "The 'spherical' parameter of FaissKMeans must be an instance of"),
    ({"max_points_per_centroid": 0}, "The 'max_points_per_centroid' parameter"),
])
def test_invalid_parameters_read_like_sklearn(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        FaissKMeans(**params).fit(np.ones((10, 2)))


def test_invalid_device_names_the_choices():
    with pytest.raises(ParameterError, match="'device' parameter must be 'auto', 'cpu'"):
        FaissKMeans(n_clusters=2, device="tpu").fit(np.ones((10, 2)))
