from __future__ import annotations

import errno
import json
import os

import h5py
import numpy as np
import pytest

import featurekit
import featurekit.base
import featurekit.store as store_module
from featurekit.exceptions import InputError
from featurekit.store import FeatureStore, StoreError, write_store


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_round_trip(tmp_path, rng):
    x = rng.normal(size=(50, 12))
    path = write_store(
        tmp_path / "f.h5",
        x,
        ids=np.arange(100, 150),
        labels=rng.integers(0, 3, 50),
        keys=[f"img_{i}.png" for i in range(50)],
        metadata={"method": "simclr", "n_features_out": np.int64(12)},
    )
    assert path == tmp_path / "f.h5"
    with FeatureStore(path) as store:
        data = store.read()
        assert len(store) == 50
        assert store.metadata == {"method": "simclr", "n_features_out": 12}
    assert data["features"].dtype == np.float32
    np.testing.assert_array_equal(data["features"], x.astype(np.float32))
    np.testing.assert_array_equal(data["ids"], np.arange(100, 150))
    assert data["ids"].dtype == np.int64 and data["labels"].dtype == np.int64
    assert data["keys"].tolist() == [f"img_{i}.png" for i in range(50)]


def test_append_in_batches_continues_ids(tmp_path, rng):
    batches = [rng.normal(size=(n, 6)) for n in (7, 1, 0, 30)]
    with FeatureStore(tmp_path / "f.h5", mode="w") as store:
        for batch, total in zip(batches, np.cumsum([len(b) for b in batches])):
            store.append(batch)
            assert len(store) == total
        store.append(rng.normal(size=(2, 6)), ids=[1000, 1001])
        store.append(rng.normal(size=(2, 6)))
    with FeatureStore(tmp_path / "f.h5", mode="a") as store:
        store.append(np.ones((1, 6)))
        ids = store.ids[:]
        np.testing.assert_array_equal(store.features[:38], np.concatenate(batches).astype("f4"))
        np.testing.assert_array_equal(store.features[-1], np.ones(6, "f4"))
    np.testing.assert_array_equal(ids, [*range(38), 1000, 1001, 1002, 1003, 1004])


def test_datasets_are_lazy_h5py_datasets(tmp_path, rng):
    write_store(tmp_path / "f.h5", rng.normal(size=(20, 4)))
    with FeatureStore(tmp_path / "f.h5") as store:
        assert isinstance(store.features, h5py.Dataset)
        assert store.features[5:7].shape == (2, 4)
        assert store.labels is None and store.keys is None


def test_float16(tmp_path, rng):
    x = rng.normal(size=(10, 3))
    write_store(tmp_path / "f.h5", x, dtype="float16")
    with FeatureStore(tmp_path / "f.h5", mode="a") as store:
        assert store.features.dtype == np.float16
        np.testing.assert_array_equal(store.features[:], x.astype(np.float16))
        store.append(x)  # later appends follow the stored dtype
        assert store.features.dtype == np.float16
        with pytest.raises(InputError, match="already holds float16.*first append"):
            store.append(x, dtype="float32")
        with pytest.raises(InputError, match="float16 range"):
            store.append(np.full((1, 3), 1e6))
        assert len(store) == 20


def test_keys_and_labels_must_be_given_on_every_append(tmp_path):
    with FeatureStore(tmp_path / "f.h5", mode="w") as store:
        store.append(np.zeros((2, 3)), labels=[1, 2], keys=["a", "b"])
        with pytest.raises(InputError, match="labels is missing"):
            store.append(np.zeros((1, 3)), keys=["c"])
        store.append(np.zeros((1, 3)), labels=[3], keys=["ç"])
        assert store.keys.asstr()[:].tolist() == ["a", "b", "ç"]
        assert store.labels[:].tolist() == [1, 2, 3]
    with FeatureStore(tmp_path / "g.h5", mode="w") as store:
        store.append(np.zeros((2, 3)))
        with pytest.raises(InputError, match="2 existing rows have no keys"):
            store.append(np.zeros((1, 3)), keys=["x"])
        assert len(store) == 2


def test_metadata_is_a_json_attribute(tmp_path):
    meta = {"method": "byol", "params": {"lr": 0.1, "sizes": [1, 2]}, "shape": np.array([3, 4])}
    with FeatureStore(tmp_path / "f.h5", mode="w") as store:
        assert store.metadata == {}
        store.set_metadata(meta)
        store.metadata = {**store.metadata, "epoch": 3}
        with pytest.raises(InputError, match="JSON"):
            store.set_metadata({"model": object()})
    with h5py.File(tmp_path / "f.h5", "r") as f:
        raw = f.attrs["featurekit_metadata"]
    assert json.loads(raw) == {
        "method": "byol", "params": {"lr": 0.1, "sizes": [1, 2]}, "shape": [3, 4], "epoch": 3
    }


def test_chunked_and_unlimited(tmp_path, rng):
    for width, dtype in [(1, "float16"), (512, "float32"), (2048, "float16"), (10**6, "float32")]:
        path = write_store(tmp_path / f"{width}.h5", np.ones((2, width)), dtype=dtype)
        with FeatureStore(path) as store:
            features = store.features
            assert features.maxshape == (None, width)
            assert store.ids.maxshape == (None,)
            chunk_bytes = np.prod(features.chunks) * features.dtype.itemsize
            assert 256 * 1024 <= chunk_bytes <= 1024 * 1024, (width, features.chunks)
            assert features.compression is None


@pytest.mark.parametrize("compression", ["lzf", "gzip"])
def test_compression(tmp_path, compression):
    x = np.zeros((100, 16))
    write_store(tmp_path / "f.h5", x, compression=compression)
    with FeatureStore(tmp_path / "f.h5") as store:
        assert store.features.compression == compression
        np.testing.assert_array_equal(store.features[:], x)


def test_write_store_is_atomic(tmp_path, rng, monkeypatch):
    path = tmp_path / "f.h5"
    write_store(path, np.ones((3, 2)), metadata={"version": 1})

    with pytest.raises(InputError, match="labels has 2 entries"):
        write_store(path, np.zeros((5, 2)), labels=[0, 1])

    def fail_mid_write(self, metadata):
        raise KeyboardInterrupt  # an interruption after the features were written

    monkeypatch.setattr(FeatureStore, "set_metadata", fail_mid_write)
    with pytest.raises(KeyboardInterrupt):
        write_store(path, np.zeros((5, 2)), metadata={"version": 2})

    with FeatureStore(path) as store:
        assert store.metadata == {"version": 1}
        np.testing.assert_array_equal(store.features[:], np.ones((3, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


def test_write_store_replaces_the_old_store(tmp_path):
    path = tmp_path / "f.h5"
    write_store(path, np.ones((3, 2)))
    write_store(str(path), np.zeros((4, 5)))
    with FeatureStore(path) as store:
        assert store.features.shape == (4, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


def test_write_store_syncs_before_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = store_module.os.fsync, store_module.os.replace
    monkeypatch.setattr(
        store_module.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))
    )
    monkeypatch.setattr(
        store_module.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))
    )
    write_store(tmp_path / "f.h5", np.ones((1, 1)))
    assert calls[:2] == ["fsync", "replace"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": np.ones(3)}, "must be 2-D"),
        ({"features": np.array([["a", "b"]])}, "real numbers"),
        ({"features": np.ones((2, 0))}, "no columns"),
        ({"features": np.ones((2, 3)), "ids": [0]}, "ids has 1 entries"),
        ({"features": np.ones((2, 3)), "ids": [0.5, 1.5]}, "ids must be integers"),
        ({"features": np.ones((2, 3)), "labels": ["a", "b"]}, "labels must be integers"),
        ({"features": np.ones((2, 3)), "keys": ["a", 3]}, "keys must be str"),
        ({"features": np.ones((2, 3)), "dtype": "int8"}, "dtype must be"),
    ],
)
def test_append_rejects_bad_inputs(tmp_path, kwargs, message):
    with FeatureStore(tmp_path / "f.h5", mode="w") as store:
        with pytest.raises(InputError, match=message):
            store.append(**kwargs)
        assert len(store) == 0


def test_append_rejects_a_different_width_and_read_only_writes(tmp_path):
    path = write_store(tmp_path / "f.h5", np.ones((2, 3)))
    with FeatureStore(path, mode="a") as store:
        with pytest.raises(InputError, match="4 columns but the store holds 3"):
            store.append(np.ones((1, 4)))
    with FeatureStore(path) as store:
        with pytest.raises(InputError, match="read-only.*mode='a'"):
            store.append(np.ones((1, 3)))
        with pytest.raises(InputError, match="read-only"):
            store.set_metadata({})
    with pytest.raises(InputError, match="closed"):
        len(store)


def test_bad_parameters(tmp_path):
    with pytest.raises(InputError, match="mode must be"):
        FeatureStore(tmp_path / "f.h5", mode="x")
    with pytest.raises(InputError, match="compression must be"):
        FeatureStore(tmp_path / "f.h5", mode="w", compression="zstd")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"No feature store at .*missing\.h5.*does not exist"):
        FeatureStore(tmp_path / "missing.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not an hdf5 file")
    for mode in ("r", "a"):
        with pytest.raises(InputError, match=r"notes\.h5 is not a feature store: it is not HDF5"):
            FeatureStore(path, mode=mode)
    assert path.read_text() == "not an hdf5 file"


def test_hdf5_but_not_a_store(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.ones((2, 2))
    with pytest.raises(InputError, match=r"other\.h5 is an HDF5 file but not a featurekit"):
        FeatureStore(path, mode="a")


def test_truncated_store(tmp_path, rng):
    path = write_store(tmp_path / "f.h5", rng.normal(size=(2000, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"f\.h5"):
        with FeatureStore(path) as store:
            store.read()


def test_directory_is_not_a_store(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        FeatureStore(tmp_path)


# -- array-like reading ----------------------------------------------------------------

def test_reads_like_an_array(tmp_path, rng):
    x = rng.normal(size=(40, 5)).astype(np.float32)
    write_store(tmp_path / "f.h5", x)
    with FeatureStore(tmp_path / "f.h5") as store:
        assert (len(store), store.shape, store.ndim, store.dtype) == (40, (40, 5), 2, np.float32)
        np.testing.assert_array_equal(store[3], x[3])
        np.testing.assert_array_equal(store[-1], x[-1])
        np.testing.assert_array_equal(store[5:25:4], x[5:25:4])
        np.testing.assert_array_equal(store[[7, 2, 7, -1]], x[[7, 2, 7, -1]])
        np.testing.assert_array_equal(store[np.arange(40) % 3 == 0], x[::3])
        np.testing.assert_array_equal(store[[4, 1], 2:], x[[4, 1], 2:])
        np.testing.assert_array_equal(store[6, 1], x[6, 1])
        np.testing.assert_array_equal(np.asarray(store), x)
        assert np.asarray(store, dtype=np.float64).dtype == np.float64
        assert store[[]].shape == (0, 5)
        for bad in (40, -41, [0, 40], np.ones(3, bool), [0.5]):
            with pytest.raises(IndexError):
                store[bad]
        assert len(list(store)) == 40  # iteration stops at the end


def test_empty_store_reads_as_empty(tmp_path):
    with FeatureStore(tmp_path / "f.h5", mode="w") as store:
        assert store.shape == (0, 0) and len(store) == 0 and store.complete
        assert store[:].shape == (0, 0) and list(store.iter_batches()) == []
        assert store.parts == []


def test_iter_batches_streams_features_and_ids(tmp_path, rng):
    x = rng.normal(size=(25, 3))
    write_store(tmp_path / "f.h5", x, ids=np.arange(100, 125), dtype="float16")
    with FeatureStore(tmp_path / "f.h5") as store:
        blocks = list(store.iter_batches(batch_size=10))
    assert [len(ids) for _, ids in blocks] == [10, 10, 5]
    assert all(f.dtype == np.float32 for f, _ in blocks)
    np.testing.assert_array_equal(np.concatenate([f for f, _ in blocks]),
                                  x.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([i for _, i in blocks]), np.arange(100, 125))


def test_a_store_fills_a_faiss_index_batch_by_batch(tmp_path, rng):
    faiss = pytest.importorskip("faiss")
    x = rng.normal(size=(300, 16)).astype(np.float32)
    write_store(tmp_path / "f.h5", x, ids=np.arange(1000, 1300))
    index = faiss.IndexIDMap(faiss.IndexFlatL2(16))
    with FeatureStore(tmp_path / "f.h5") as store:
        for features, ids in store.iter_batches(batch_size=64):
            index.add_with_ids(features, ids)
        query = store[[17, 250]]
    _, found = index.search(query, 1)
    assert index.ntotal == 300 and found[:, 0].tolist() == [1017, 1250]


@pytest.fixture
def tabular_model():
    return featurekit.create("pretrained", backbone="mlp", backbone_kwargs={"hidden": (6,)},
                             device="cpu", random_state=0, verbose=0, inference_batch_size=16)


@pytest.mark.parametrize("as_dataset", [False, True])
def test_a_store_is_lazy_input_to_fit_and_transform(tmp_path, rng, monkeypatch, tabular_model,
                                                    as_dataset):
    x = rng.normal(size=(100, 12)).astype(np.float32)
    write_store(tmp_path / "f.h5", x)
    in_memory = tabular_model.fit(x)
    expected, mean, scale = in_memory.transform(x), in_memory.mean_, in_memory.scale_

    def no_full_reads(self, *args, **kwargs):
        raise AssertionError("the store was loaded whole")

    reads, real_getitem = [], h5py.Dataset.__getitem__

    def counted(self, index):
        out = real_getitem(self, index)
        reads.append(len(out))
        return out

    monkeypatch.setattr(FeatureStore, "__array__", no_full_reads)
    monkeypatch.setattr(featurekit.base, "validate_data", no_full_reads)
    with FeatureStore(tmp_path / "f.h5") as store:
        X = store.features if as_dataset else store
        monkeypatch.setattr(h5py.Dataset, "__getitem__", counted)
        lazy = tabular_model.fit(X)
        reads.clear()
        features = lazy.transform(X)
    assert reads == [16] * 6 + [4]  # one inference batch at a time
    np.testing.assert_allclose(lazy.mean_, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lazy.scale_, scale, rtol=1e-5)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert lazy.n_features_in_ == 12


def test_lazy_input_errors(tmp_path, tabular_model):
    write_store(tmp_path / "f.h5", np.ones((10, 3)))
    tabular_model.fit(np.random.default_rng(0).normal(size=(20, 4)))
    with FeatureStore(tmp_path / "f.h5") as store:
        with pytest.raises(InputError, match="X has 3 features, but the estimator is expecting 4"):
            tabular_model.transform(store)
    with FeatureStore(tmp_path / "g.h5", mode="w") as store:
        with pytest.raises(InputError, match="empty feature store"):
            tabular_model.fit(store)
    write_store(tmp_path / "nan.h5", np.full((4, 4), np.nan))
    with FeatureStore(tmp_path / "nan.h5") as store:
        with pytest.raises(InputError, match="NaN"):
            tabular_model.transform(store)


# -- stores in parts (written by extract; see also tests/test_extraction.py) -------------

def _parted_store(path, rows=(3, 2)):
    """A store of parts, as extract writes it, without a model."""
    from featurekit import store_parts

    made, start = [], 0
    with store_parts.locked(path):
        for index, n in enumerate(rows):
            block = {"features": np.full((n, 2), index, np.float32), "labels": np.arange(n),
                     "ids": np.arange(start, start + n)}
            made.append(store_parts.write_part(path, index, start, start + n, [block], info={},
                                         dtype=np.float32, compression=None))
            start += n
        store_parts.write_index(path, made, {"method": "test"}, part_size=None, n_samples=start)
    return path


def test_append_to_a_parted_store_adds_a_committed_part(tmp_path):
    path = _parted_store(tmp_path / "f.h5")
    reader = FeatureStore(path)
    with FeatureStore(path, mode="a") as store:
        assert len(store) == 5 and len(store.parts) == 2
        store.append(np.full((4, 2), 7.0), labels=[9, 9, 9, 9])
        assert len(store) == 9 and [p.name for p in store.parts][-1] == "part-00002.h5"
        store.set_metadata({**store.metadata, "note": "appended"})
        with pytest.raises(InputError, match="labels is missing"):
            store.append(np.ones((1, 2)))
        with pytest.raises(InputError, match="3 columns but the store holds 2"):
            store.append(np.ones((1, 3)), labels=[0])
    assert len(reader) == 5  # an open reader keeps its consistent view
    reader.close()
    with FeatureStore(path) as store:
        assert store.metadata == {"method": "test", "note": "appended"}
        assert store.ids[:].tolist() == list(range(9))
        assert store.labels[:].tolist() == [0, 1, 2, 0, 1, 9, 9, 9, 9]
        assert store[:, 0].tolist() == [0, 0, 0, 1, 1, 7, 7, 7, 7]
        assert store.complete and store.features.is_virtual
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_unfinished_parted_store_refuses_appends(tmp_path):
    from featurekit import store_parts

    path = _parted_store(tmp_path / "f.h5")
    listed = store_parts.scan(path)
    store_parts.write_index(path, listed, {}, part_size=3, n_samples=10)
    with FeatureStore(path, mode="a") as store:
        assert not store.complete
        with pytest.raises(InputError, match="unfinished extraction \\(5 of 10 rows\\)"):
            store.append(np.ones((1, 2)), labels=[0])


def test_mode_w_replaces_a_parted_store_with_its_parts(tmp_path):
    path = _parted_store(tmp_path / "f.h5")
    with FeatureStore(path, mode="w") as store:
        store.append(np.ones((1, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]
    with FeatureStore(path) as store:
        assert store.parts == [] and len(store) == 1


def test_missing_index_with_parts_says_resume(tmp_path):
    path = _parted_store(tmp_path / "f.h5")
    path.unlink()
    with pytest.raises(InputError, match="interrupted extraction: run it again to resume"):
        FeatureStore(path)


# -- a full or read-only disk ----------------------------------------------------------

def test_full_disk_keeps_the_existing_store(tmp_path, monkeypatch):
    path = write_store(tmp_path / "f.h5", np.ones((3, 2)))

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "fsync", disk_full)
    with pytest.raises(StoreError, match="No space left on device. The disk is full") as error:
        write_store(path, np.zeros((5, 2)))
    monkeypatch.undo()
    assert error.value.errno == errno.ENOSPC and isinstance(error.value, OSError)
    with FeatureStore(path) as store:
        np.testing.assert_array_equal(store[:], np.ones((3, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


def test_full_disk_on_append_and_read_only_create(tmp_path, monkeypatch):
    with FeatureStore(tmp_path / "f.h5", mode="w") as store:
        store.append(np.ones((2, 2)))
        monkeypatch.setattr(h5py.Dataset, "__setitem__", lambda *a: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device")))
        with pytest.raises(StoreError, match="Cannot append to .*f.h5: No space left.*"
                                             "The rows stored before are kept"):
            store.append(np.zeros((2, 2)))
        monkeypatch.undo()
        assert len(store) == 2 and store.ids.shape == (2,)  # the columns stay aligned
        store.append(np.zeros((1, 2)))
        assert store.ids[:].tolist() == [0, 1, 2] and store[:].sum() == 4

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(store_module.h5py, "File", read_only)
    with pytest.raises(StoreError, match="read-only file system: choose another path"):
        FeatureStore(tmp_path / "g.h5", mode="w")


def test_parted_store_full_disk_leaves_it_unchanged(tmp_path, monkeypatch):
    from featurekit import store_parts

    path = _parted_store(tmp_path / "f.h5")
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_parts, "commit_file", disk_full)
    with FeatureStore(path, mode="a") as store:
        with pytest.raises(StoreError, match="The store is unchanged"):
            store.append(np.ones((1, 2)), labels=[0])
        with pytest.raises(StoreError, match="The store is unchanged"):
            store.set_metadata({"x": 1})
        assert len(store) == 5 and store.metadata == {"method": "test"}
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
