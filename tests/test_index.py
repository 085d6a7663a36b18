"""FeatureIndex and the faiss kNN drop-ins: agreement with scikit-learn's brute
force on real digits, recall of the approximate kinds, ids and keys, removal,
atomic files, pickling, every bad input, and sklearn's estimator checks."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import faiss
import h5py
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.manifold import TSNE, Isomap
from sklearn.neighbors import KNeighborsClassifier, KNeighborsTransformer, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import featurekit.index as index_module
from featurekit.exceptions import InputError, NotFittedError, ParameterError, StoreError
from featurekit import index_tuning
from featurekit.index import FeatureIndex, auto_nlist
from featurekit.neighbors import FaissKNeighborsClassifier, FaissKNeighborsTransformer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist_test.npz"
KINDS = ["flat", "ivf", "hnsw", "ivfpq"]


@pytest.fixture(scope="module")
def mnist():
    """5,000 base and 500 held-out query images of MNIST as 32-d PCA features."""
    if DATA.exists():
        with np.load(DATA) as d:
            x = d["x"][:5500].reshape(5500, -1).astype(np.float32) / 255
            y = d["y"][:5500]
    else:  # the shared data are not shipped with the package; digits are
        x, y = load_digits(return_X_y=True)
        x = np.tile(x, (4, 1))[:5500] + np.random.default_rng(0).normal(0, 0.5, (5500, 64))
        y = np.tile(y, 4)[:5500]
    features = PCA(32, random_state=0).fit_transform(x).astype(np.float32)
    return features[:5000], features[5000:], y[:5000], y[5000:]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def recall(found, truth):
    return np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)])


# -- exact search agrees with scikit-learn ------------------------------------
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_flat_matches_sklearn_brute(mnist, metric):
    base, queries, _, _ = mnist
    scores, ids = FeatureIndex("flat", metric=metric).fit(base).search(queries, k=10)
    sk_metric = "euclidean" if metric == "l2" else "cosine"
    sk = NearestNeighbors(algorithm="brute", metric=sk_metric).fit(base.astype(np.float64))
    sk_dist, sk_ids = sk.kneighbors(queries.astype(np.float64), 10)
    # sklearn reports plain Euclidean distances, and cosine *distances*.
    ours = scores if metric == "l2" else 1 - scores
    np.testing.assert_allclose(ours, sk_dist, rtol=1e-5, atol=1e-6)
    # Same sets up to ties: every id we return is no farther than sklearn's k-th.
    q, b = queries.astype(np.float64), base.astype(np.float64)
    if metric == "cosine":
        q, b = q / np.linalg.norm(q, axis=1)[:, None], b / np.linalg.norm(b, axis=1)[:, None]
    true = np.linalg.norm(q[:, None, :] - b[ids], axis=2)
    true = true if metric == "l2" else true**2 / 2
    assert np.all(true <= sk_dist[:, -1:] * (1 + 1e-5) + 1e-7)
    assert recall(ids, sk_ids) > 0.999


def test_scores_per_metric():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    d, i = FeatureIndex(metric="l2").fit(x).search([[0.0, 0.0]], k=3)
    np.testing.assert_allclose(d, [[0, 5, 10]])  # plain, not squared (25, 100)
    d, i = FeatureIndex(metric="ip").fit(x).search([[1.0, 1.0]], k=3)
    assert i.tolist() == [[2, 1, 0]] and d.tolist() == [[14, 7, 0]]
    d, i = FeatureIndex(metric="cosine").fit(x).search([[4.0, 3.0]], k=3)
    np.testing.assert_allclose(d[0, :2], [0.96, 0.96], rtol=1e-6)
    assert d[0, 2] == 0  # a zero vector has cosine similarity 0, as in sklearn
    x_before = x.copy()
    FeatureIndex(metric="cosine").fit(x)
    np.testing.assert_array_equal(x, x_before)  # normalized copies, never the caller's array


# -- approximate kinds ---------------------------------------------------------
@pytest.mark.parametrize("kind, min_recall", [("ivf", 0.95), ("hnsw", 0.95), ("ivfpq", 0.6)])
def test_approximate_recall(mnist, kind, min_recall):
    base, queries, _, _ = mnist
    _, truth = FeatureIndex("flat").fit(base).search(queries, k=10)
    index = FeatureIndex(kind, random_state=0).fit(base)
    scores, ids = index.search(queries, k=10)
    assert recall(ids, truth) >= min_recall
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    if kind != "hnsw":
        assert index.nlist_ == auto_nlist(5000) == 128
    if kind == "ivfpq":
        assert index.pq_m_ == 8
        index.set_params(nprobe=1)  # read at search time
        assert recall(index.search(queries, k=10)[1], truth) < recall(ids, truth)


def test_ivf_is_deterministic_with_random_state(digits):
    x, _ = digits
    a = FeatureIndex("ivf", nlist=20, random_state=0).fit(x).search(x[:50], 5)
    b = FeatureIndex("ivf", nlist=20, random_state=0).fit(x).search(x[:50], 5)
    np.testing.assert_array_equal(a[1], b[1])


def test_missing_results_are_marked(digits):
    x, _ = digits
    index = FeatureIndex("ivf", nlist=40, nprobe=1, random_state=0).fit(
        x, keys=[f"{i}.png" for i in range(len(x))])
    scores, ids = index.search(x[:200], k=150)
    missing = ids == -1
    assert missing.any() and not missing.all()
    assert np.all(scores[missing] == -np.inf) and np.all(np.isfinite(scores[~missing]))
    _, keys = index.search(x[:200], k=150, return_keys=True)
    assert all(k is None for k in keys[missing])
    assert keys[~missing].tolist() == [f"{i}.png" for i in ids[~missing]]


def test_auto_rules():
    assert auto_nlist(100_000) == 1265 and auto_nlist(1000) == 25 and auto_nlist(10) == 1
    assert all(auto_nlist(n) * 39 <= max(n, 39) for n in (10, 100, 1000, 10**6))


def test_exact_neighbours_merges_blocks():
    rng = np.random.default_rng(0)
    base, queries = rng.normal(size=(103, 8)).astype(np.float32), rng.normal(size=(7, 8))
    queries = queries.astype(np.float32)
    blocks = [base[:50], base[50:53], base[53:]]  # one block smaller than k
    for largest in (False, True):
        found = index_tuning.exact_neighbours(iter(blocks), queries, 5, largest=largest)
        scores = queries @ base.T if largest else -((queries[:, None] - base) ** 2).sum(-1)
        np.testing.assert_array_equal(found, np.argsort(-scores, axis=1, kind="stable")[:, :5])


def test_search_effort_is_calibrated_to_the_target(mnist):
    base, queries, _, _ = mnist
    _, truth = FeatureIndex("flat").fit(base).search(queries, k=10)
    low = FeatureIndex("ivf", target_recall=0.6, random_state=0).fit(base)
    high = FeatureIndex("ivf", target_recall=0.99, random_state=0).fit(base)
    assert low.nprobe_ < high.nprobe_ <= high.nlist_
    assert 0.6 <= low.calibrated_recall_ < 0.99 <= high.calibrated_recall_
    # the estimate, from indexed vectors, is close to held-out queries' recall
    for index in (low, high):
        held_out = recall(index.search(queries, k=10)[1], truth)
        assert abs(held_out - index.calibrated_recall_) < 0.05
    hnsw = FeatureIndex("hnsw", target_recall=0.99, random_state=0).fit(base)
    assert hnsw.calibrated_recall_ >= 0.99 and hnsw.ef_search_ >= 10 and hnsw.nprobe_ is None
    flat = FeatureIndex("flat").fit(base)
    assert flat.nprobe_ is None and flat.calibrated_recall_ is None


def test_lossy_codes_stop_at_the_recall_plateau(mnist):
    base, queries, _, _ = mnist
    index = FeatureIndex("ivfpq", pq_m=2, target_recall=1.0, random_state=0).fit(base)
    assert index.calibrated_recall_ < 0.9 and index.nprobe_ < index.nlist_
    _, truth = FeatureIndex("flat").fit(base).search(queries, k=10)
    at_default = recall(index.search(queries, k=10)[1], truth)
    index.set_params(nprobe=index.nlist_)  # probing everything gains little more
    assert recall(index.search(queries, k=10)[1], truth) < at_default + 0.03


def test_opq_rotation_is_learned_saved_and_deterministic(mnist, tmp_path):
    base, queries = mnist[0][:2000], mnist[1][:200]
    _, truth = FeatureIndex("flat").fit(base).search(queries, k=10)
    params = {"nlist": 8, "nprobe": 8, "pq_m": 4, "pq_nbits": 6, "random_state": 0}
    found = {}
    for rotation in ("random", "opq"):
        index = FeatureIndex("ivfpq", pq_rotation=rotation, **params).fit(base)
        found[rotation] = index.search(queries, k=10)[1]
    transform = faiss.downcast_VectorTransform(index.index_.chain.at(0))
    assert type(transform).__name__ == "OPQMatrix" and transform.is_trained
    rotation = faiss.vector_to_array(transform.A).reshape(32, 32)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(32), atol=1e-4)
    assert not np.allclose(rotation, np.eye(32), atol=0.1)  # learned, not the identity
    # At 4 bytes per vector, the learned rotation loses less (0.48 vs 0.44 here).
    assert recall(found["opq"], truth) > recall(found["random"], truth) + 0.02
    again = FeatureIndex("ivfpq", pq_rotation="opq", **params).fit(base)
    np.testing.assert_array_equal(again.search(queries, k=10)[1], found["opq"])
    loaded = FeatureIndex.load(index.save(tmp_path / "opq.index"))
    assert loaded.pq_rotation == "opq"
    np.testing.assert_array_equal(loaded.search(queries, k=10)[1], found["opq"])
    with pytest.raises(InvalidParameterError, match="pq_rotation"):
        FeatureIndex("ivfpq", pq_rotation="pca").fit(base)


# -- ids, keys, add, remove ----------------------------------------------------
def test_ids_keys_and_add(digits):
    x, _ = digits
    index = FeatureIndex(metric="l2").fit(x[:10], ids=np.arange(100, 110),
                                          keys=[f"a{i}" for i in range(10)])
    index.add(x[10:12], keys=["b0", "b1"])
    assert index.ids_.tolist() == [*range(100, 110), 110, 111] and len(index) == 12
    _, ids = index.search(x[[3, 11]], k=1)
    assert ids.tolist() == [[103], [111]]
    _, keys = index.search(x[[3, 11]], k=1, return_keys=True)
    assert keys.tolist() == [["a3"], ["b1"]]
    with pytest.raises(InputError, match="has keys"):
        index.add(x[12:13])
    with pytest.raises(InputError, match="distinct and new"):
        index.add(x[12:14], ids=[105, 200], keys=["c", "d"])
    with pytest.raises(InputError, match="distinct and new"):
        index.add(x[12:14], ids=[300, 300], keys=["c", "d"])
    with pytest.raises(InputError, match=">= 0"):
        index.add(x[12:13], ids=[-1], keys=["c"])
    with pytest.raises(InputError, match="keys must be str"):
        index.add(x[12:13], keys=[7])
    assert len(index) == 12  # nothing was added by the failed calls
    with pytest.raises(InputError, match="no keys"):
        FeatureIndex().fit(x[:5]).search(x[:1], 1, return_keys=True)


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_remove(digits, kind):
    x, _ = digits
    index = FeatureIndex(kind, nlist=10, pq_m=8, pq_nbits=4, random_state=0).fit(
        x, keys=[str(i) for i in range(len(x))])
    gone = np.arange(0, 1797, 2)
    index.remove(gone)
    assert len(index) == 1797 - len(gone)
    _, ids = index.search(x[:100], k=5)
    assert not np.isin(ids, gone).any()
    _, keys = index.search(x[:100], k=5, return_keys=True)
    assert keys.tolist() == [[str(i) for i in row] for row in ids]
    with pytest.raises(InputError, match=r"not in the index.*nothing was removed"):
        index.remove([1, 0])
    assert len(index) == 1797 - len(gone)
    index.remove(index.ids_)
    with pytest.raises(InputError, match="empty"):
        index.search(x[:1], k=1)


def test_hnsw_cannot_remove(digits):
    index = FeatureIndex("hnsw").fit(digits[0][:100])
    with pytest.raises(ParameterError, match="Rebuild"):
        index.remove([0])


# -- inputs ----------------------------------------------------------------------
def test_torch_and_h5py_inputs(tmp_path, digits):
    x, _ = digits
    expected = FeatureIndex(metric="l2").fit(x).search(x[:20], 5)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = x.astype(np.float16)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        from_h5 = FeatureIndex(metric="l2").fit(f["x"]).search(x[:20], 5)
    from_torch = FeatureIndex(metric="l2").fit(torch.from_numpy(x)).search(
        torch.from_numpy(x[:20]), 5)
    np.testing.assert_array_equal(from_torch[1], expected[1])
    np.testing.assert_array_equal(from_h5[1][:, 0], expected[1][:, 0])


def test_index_a_feature_store(tmp_path, digits):
    """What ``featurekit index feats.h5`` does: features read lazily, ids and keys kept."""
    from featurekit.store import FeatureStore, write_store

    x, _ = digits
    keys = [f"img/{i}.png" for i in range(len(x))]
    write_store(tmp_path / "feats.h5", x, ids=np.arange(len(x)) + 1000, keys=keys)
    with FeatureStore(tmp_path / "feats.h5") as store:
        index = FeatureIndex("ivf", nlist=10, random_state=0).fit(
            store.features, ids=store.ids[:], keys=store.keys.asstr()[:])
    _, found = index.search(x[[5, 9]], k=1, return_keys=True)
    assert found.tolist() == [["img/5.png"], ["img/9.png"]]
    assert index.search(x[[5]], k=1)[1].tolist() == [[1005]]


def test_lazy_training_sample_matches_in_memory(tmp_path, digits):
    x, _ = digits  # 1797 rows > 256 * nlist: both train on the same random sample
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = x
    expected = FeatureIndex("ivf", nlist=4, random_state=0).fit(x).search(x[:50], 5)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        lazy = FeatureIndex("ivf", nlist=4, random_state=0).fit(f["x"]).search(x[:50], 5)
    np.testing.assert_array_equal(lazy[1], expected[1])


@pytest.fixture
def one_faiss_thread():
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # parallel HNSW inserts race, so only one thread repeats
    yield
    faiss.omp_set_num_threads(threads)


def test_hnsw_is_deterministic_on_one_thread(digits, one_faiss_thread):
    x, _ = digits
    a = FeatureIndex("hnsw", hnsw_m=4, random_state=0).fit(x)
    b = FeatureIndex("hnsw", hnsw_m=4, random_state=0).fit(x)
    np.testing.assert_array_equal(a.search(x, 5)[1], b.search(x, 5)[1])
    graph = faiss.serialize_index(a.index_).tobytes()
    assert graph == faiss.serialize_index(b.index_).tobytes()
    other = FeatureIndex("hnsw", hnsw_m=4, random_state=1).fit(x)  # the seed is used
    assert graph != faiss.serialize_index(other.index_).tobytes()


def test_failed_refit_keeps_the_fitted_index(digits):
    x, _ = digits
    index = FeatureIndex("ivf", nlist=10, random_state=0).fit(x[:500])
    before = index.search(x[:5], 3)
    with pytest.raises(InputError, match="nlist=600"):
        index.set_params(nlist=600).fit(x[:500])
    assert index.nlist_ == 10 and len(index) == 500
    np.testing.assert_array_equal(index.search(x[:5], 3)[1], before[1])


def test_float32_inputs_are_not_copied(digits):
    x, _ = digits
    rows = index_module._Rows(x, "X")
    assert rows.data is x and not rows.owned  # so cosine normalizes a copy instead
    tensor = torch.from_numpy(x)
    assert np.shares_memory(index_module._Rows(tensor, "X").data, x)
    assert index_module._Rows(x.astype(np.float64), "X").owned


@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs(digits, kind):
    x, _ = digits
    index = FeatureIndex(kind, nlist=10, random_state=0)
    with pytest.raises(NotFittedError, match="call fit"):
        index.search(x[:1])
    with pytest.raises(SkNotFittedError):  # also sklearn's
        index.add(x[:1])
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite.*row 7"):
        index.fit(bad)
    with pytest.raises(InputError, match="no rows"):
        index.fit(x[:0])
    index.fit(x)
    with pytest.raises(InputError, match="65 features but the index holds 64-d"):
        index.search(np.ones((2, 65)))
    with pytest.raises(InputError, match="reshape"):
        index.search(x[0])
    with pytest.raises(InputError, match="k=1798 is larger than the index"):
        index.search(x[:1], k=1798)
    with pytest.raises(InputError, match="positive integer"):
        index.search(x[:1], k=0)
    with pytest.raises(InputError, match="NaN or infinite"):
        index.search(np.full((1, 64), np.inf))
    with pytest.raises(InputError, match="real numbers"):
        index.search(np.array([["a"] * 64]))
    with pytest.raises(InputError, match="2-D array of numbers"):
        index.search([[1.0] * 64, [1.0]])
    inf_row = x[:3].astype(np.float64)
    inf_row[2, 0] = 1e300  # beyond float32
    with pytest.raises(InputError, match="row 2"):
        index.add(inf_row)
    assert len(index) == len(x)  # the failed add added nothing


def test_parameter_errors(digits):
    x, _ = digits
    with pytest.raises(InvalidParameterError,
                       match="The 'kind' parameter of FeatureIndex must be a str among"):
        FeatureIndex("annoy").fit(x)
    with pytest.raises(InvalidParameterError, match="'nprobe' parameter"):
        FeatureIndex("ivf", nprobe=0).fit(x)
    with pytest.raises(InputError, match="nlist=2000 needs at least 2000 vectors"):
        FeatureIndex("ivf", nlist=2000).fit(x)
    with pytest.warns(UserWarning, match="fewer than 39 training vectors per list"):
        FeatureIndex("ivf", nlist=100).fit(x)
    with pytest.raises(ParameterError, match="must divide the number of features"):
        FeatureIndex("ivfpq", pq_m=7).fit(x)
    with pytest.raises(InputError, match="needs at least 65536 vectors"):
        FeatureIndex("ivfpq", pq_nbits=16, nlist=4).fit(x)
    index = FeatureIndex("ivf", nlist=10).fit(x)
    index.set_params(nprobe=-3)
    with pytest.raises(InvalidParameterError, match="'nprobe' parameter"):
        index.search(x[:1])


def test_device_rules(monkeypatch):
    assert index_module._resolve_device("cpu", "ivf") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    with pytest.warns(UserWarning, match="no GPU support"):
        assert index_module._resolve_device("cuda", "flat") == "cpu"
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    assert index_module._resolve_device("auto", "ivf") == "cuda:0"
    assert index_module._resolve_device("auto", "hnsw") == "cpu"
    with pytest.warns(UserWarning, match="HNSW index runs on the CPU only"):
        assert index_module._resolve_device("cuda:0", "hnsw") == "cpu"


@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs faiss-gpu and a GPU")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_matches_cpu(tmp_path, mnist, kind):
    base, queries, _, _ = mnist
    cpu = FeatureIndex(kind, device="cpu", random_state=0).fit(base)
    gpu = FeatureIndex(kind, device="cuda", random_state=0).fit(base)
    assert gpu.device_ == "cuda:0"
    assert recall(gpu.search(queries, 10)[1], cpu.search(queries, 10)[1]) > 0.99
    gpu.remove([0, 1])
    loaded = FeatureIndex.load(gpu.save(tmp_path / "g.index"), device="cpu")
    assert len(loaded) == len(base) - 2


# -- files and pickling ----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, digits, kind):
    x, _ = digits
    index = FeatureIndex(kind, metric="l2", nlist=10, pq_m=8, pq_nbits=4, random_state=0)
    index.fit(x[:1000], ids=np.arange(1000) * 3, keys=[f"img/{i}.png" for i in range(1000)])
    path = index.save(tmp_path / "sub" / "feats.index", metadata={"model": "m.fk", "n": 3})
    loaded = FeatureIndex.load(path)
    assert loaded.get_params() == index.get_params()
    assert loaded.metadata_ == {"model": "m.fk", "n": 3} and index.metadata_ == {}
    for fitted in ("nlist_", "pq_m_", "nprobe_", "ef_search_", "calibrated_recall_"):
        assert getattr(loaded, fitted) == getattr(index, fitted)
    for return_keys in (False, True):
        expected = index.search(x[1000:1050], 5, return_keys=return_keys)
        got = loaded.search(x[1000:1050], 5, return_keys=return_keys)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(loaded.ids_, index.ids_)
    assert faiss.read_index(str(path)).ntotal == 1000  # a plain faiss file up front
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch, digits):
    x, _ = digits
    path = FeatureIndex().fit(x[:100]).save(tmp_path / "f.index")
    before = path.read_bytes()
    real_write = faiss.write_index

    def disk_full(index, name):
        real_write(index, name)
        with open(name, "r+b") as f:
            f.truncate(100)  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)
    with pytest.raises(StoreError, match="disk is full.*unchanged") as info:
        FeatureIndex().fit(x).save(path)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert len(FeatureIndex.load(path)) == 100

    def faiss_fails(index, name):
        raise RuntimeError("Error: 'ret == (n)' failed: write error")

    monkeypatch.setattr(faiss, "write_index", faiss_fails)
    with pytest.raises(StoreError, match="faiss could not write"):
        FeatureIndex().fit(x).save(path)
    monkeypatch.setattr(faiss, "write_index", real_write)
    monkeypatch.setattr(index_module.os, "fsync",
                        lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(StoreError):
        FeatureIndex().fit(x).save(path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_load_errors(tmp_path, digits):
    with pytest.raises(InputError, match="does not exist"):
        FeatureIndex.load(tmp_path / "missing.index")
    plain = tmp_path / "plain.faiss"
    faiss.write_index(faiss.IndexFlatL2(4), str(plain))
    with pytest.raises(InputError, match="not a featurekit index.*faiss.read_index"):
        FeatureIndex.load(plain)
    saved = FeatureIndex().fit(digits[0][:10]).save(tmp_path / "f.index")
    saved.write_bytes(saved.read_bytes()[:-3])  # a torn copy
    with pytest.raises(InputError, match="not a featurekit index"):
        FeatureIndex.load(saved)
    with pytest.raises(InputError, match="metadata cannot be saved as JSON"):
        FeatureIndex().fit(digits[0][:10]).save(tmp_path / "g.index", metadata={"x": object()})
    assert not (tmp_path / "g.index").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_and_clone(digits, kind):
    x, _ = digits
    index = FeatureIndex(kind, nlist=10, pq_m=8, pq_nbits=4, random_state=0).fit(x[:500])
    copy = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(copy.search(x[:20], 3)[1], index.search(x[:20], 3)[1])
    assert "index_" not in vars(clone(index)) and clone(index).get_params() == index.get_params()
    assert len(index) == 500  # pickling did not disturb the original


# -- scikit-learn drop-ins -------------------------------------------------------
@parametrize_with_checks([FaissKNeighborsClassifier(), FaissKNeighborsTransformer(),
                          FaissKNeighborsClassifier(weights="distance", metric="cosine")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_classifier_equals_sklearn(mnist, weights, metric):
    base, queries, y_base, y_queries = mnist
    sk_metric = "euclidean" if metric == "l2" else "cosine"
    sk = KNeighborsClassifier(5, weights=weights, metric=sk_metric, algorithm="brute")
    sk.fit(base, y_base)
    ours = FaissKNeighborsClassifier(5, weights=weights, metric=metric).fit(base, y_base)
    assert ours.score(queries, y_queries) == sk.score(queries, y_queries) > 0.9
    np.testing.assert_array_equal(ours.predict(queries), sk.predict(queries))
    np.testing.assert_allclose(ours.predict_proba(queries), sk.predict_proba(queries),
                               atol=1e-4)
    np.testing.assert_array_equal(ours.classes_, sk.classes_)
    dist, ind = ours.kneighbors(n_neighbors=3)  # X=None: each point not its own neighbour
    sk_dist, sk_ind = sk.kneighbors(n_neighbors=3)
    assert recall(ind, sk_ind) > 0.999
    np.testing.assert_allclose(dist, sk_dist, rtol=1e-4, atol=1e-5)


def test_classifier_ip_and_approximate_kinds(mnist):
    base, queries, y_base, y_queries = mnist
    exact = FaissKNeighborsClassifier(metric="cosine").fit(base, y_base).score(queries,
                                                                                y_queries)
    hnsw = FaissKNeighborsClassifier(metric="cosine", kind="hnsw",
                                     index_params={"random_state": 0}).fit(base, y_base)
    assert abs(hnsw.score(queries, y_queries) - exact) < 0.02
    ip = FaissKNeighborsClassifier(metric="ip").fit(base, y_base)
    dist, _ = ip.kneighbors(queries[:5])
    assert np.all(np.diff(dist, axis=1) >= 0)  # negated inner products, nearest first
    with pytest.raises(ParameterError, match="weights='distance' needs a distance"):
        FaissKNeighborsClassifier(metric="ip", weights="distance").fit(base, y_base)
    with pytest.raises(ParameterError, match="must not set"):
        FaissKNeighborsClassifier(index_params={"metric": "l2"}).fit(base, y_base)


@pytest.mark.parametrize("mode", ["distance", "connectivity"])
def test_transformer_equals_sklearn(digits, mode):
    x, _ = digits
    x = x + np.random.default_rng(0).normal(0, 0.01, x.shape)  # no distance ties
    ours = FaissKNeighborsTransformer(mode=mode, n_neighbors=6).fit_transform(x)
    sk = KNeighborsTransformer(mode=mode, n_neighbors=6, algorithm="brute").fit_transform(x)
    assert ours.format == "csr" and ours.shape == sk.shape == (1797, 1797)
    np.testing.assert_array_equal(ours.indices, sk.indices)
    np.testing.assert_array_equal(ours.indptr, sk.indptr)
    np.testing.assert_allclose(ours.data, sk.data, rtol=1e-4, atol=2e-3)  # self: ~0 in f32


def test_transformer_in_precomputed_pipelines(digits):
    x, _ = digits
    x = x[:300] + np.random.default_rng(0).normal(0, 0.01, (300, 64))  # no distance ties
    ours = make_pipeline(FaissKNeighborsTransformer(n_neighbors=15),
                         Isomap(n_neighbors=15, metric="precomputed")).fit_transform(x)
    sk = make_pipeline(KNeighborsTransformer(n_neighbors=15),
                       Isomap(n_neighbors=15, metric="precomputed")).fit_transform(x)
    np.testing.assert_allclose(np.abs(ours), np.abs(sk), rtol=1e-3, atol=1e-3)
    tsne = make_pipeline(FaissKNeighborsTransformer(n_neighbors=16),
                         TSNE(metric="precomputed", perplexity=5, init="random",
                              max_iter=250, random_state=0)).fit_transform(x)
    assert tsne.shape == (300, 2) and np.isfinite(tsne).all()
