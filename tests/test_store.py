from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import featurekit.store as store_module
from featurekit.exceptions import InputError
from featurekit.store import FeatureStore, write_store


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
