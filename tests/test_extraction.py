"""Streaming extraction into a parted feature store: resume, refusals, failures, memory."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_digits

import featurekit
from featurekit import store_parts
from featurekit.cli import get_cli
from featurekit.exceptions import FeaturekitError, InputError, ParameterError
from featurekit.extraction import weights_sha256
from featurekit.store import FeatureStore, StoreError, extract, write_store

TINY = dict(backbone="mlp", backbone_kwargs={"hidden": (8,)}, device="cpu", random_state=0,
            verbose=0)
N, PART, BATCH = 300, 64, 32  # 5 parts of 2 batches each (the last: 44 rows)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:N], y[:N]


@pytest.fixture(scope="module")
def est(digits):
    return featurekit.create("pretrained", **TINY).fit(digits[0])


@pytest.fixture(scope="module")
def other_est(digits):
    return featurekit.create("pretrained", **{**TINY, "random_state": 1}).fit(digits[0])


@pytest.fixture(scope="module")
def reference(est, digits):
    return est.transform(digits[0])


def run(est, X, path, **kwargs):
    return extract(est, X, path, **{"part_size": PART, "batch_size": BATCH, **kwargs})


def snapshot(folder):
    """Every file under ``folder`` with its bytes, to show that nothing changed."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_extract_writes_parts_and_an_index(tmp_path, est, digits, reference):
    X, y = digits
    keys = [f"img/{i}.png" for i in range(N)]
    path = run(est, X, tmp_path / "feats.h5", labels=y, keys=keys, metadata={"run": 7})
    assert path == tmp_path / "feats.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.h5", "feats.h5.parts"]
    assert sorted(p.name for p in (tmp_path / "feats.h5.parts").iterdir()) == [
        ".lock", *[f"part-{k:05d}.h5" for k in range(5)]]
    with FeatureStore(path) as store:
        assert store.complete and store.shape == (N, 8) and store.dtype == np.float32
        assert store.features.is_virtual
        np.testing.assert_array_equal(store[:], reference)
        np.testing.assert_array_equal(store.ids[:], np.arange(N))
        np.testing.assert_array_equal(store.labels[:], y)
        assert store.keys.asstr()[:].tolist() == keys
        assert [p.name for p in store.parts] == [f"part-{k:05d}.h5" for k in range(5)]
        meta = store.metadata
    assert meta["run"] == 7 and meta["method"] == "pretrained"
    assert meta["model_sha256"] == weights_sha256(est.modules_)
    assert meta["params"]["backbone_kwargs"] == {"hidden": [8]}
    assert meta["backbone"]["backbone"] == "mlp" and meta["n_features"] == 8
    assert meta["featurekit_version"] == featurekit.__version__ and meta["torch_version"]
    assert meta["input_description"] == "ndarray (300, 64) float64"
    assert meta["n_samples"] == N and meta["created"] <= meta["completed"]
    with h5py.File(path) as f:  # provenance is plain JSON, never a pickle
        assert json.loads(f.attrs["featurekit_metadata"]) == meta
        layout = json.loads(f.attrs["featurekit_parts"])
    assert layout["part_size"] == PART and layout["n_samples"] == N
    assert [(p["start"], p["stop"]) for p in layout["parts"]] == [
        (0, 64), (64, 128), (128, 192), (192, 256), (256, 300)]


def test_each_part_is_a_complete_store(tmp_path, est, digits, reference):
    path = run(est, digits[0], tmp_path / "f.h5")
    with FeatureStore(store_parts.part_path(path, 4)) as part:
        assert part.metadata["start"] == 256 and part.metadata["stop"] == 300
        assert part.metadata["model_sha256"] == weights_sha256(est.modules_)
        np.testing.assert_array_equal(part.ids[:], np.arange(256, 300))
        np.testing.assert_array_equal(part[:], reference[256:])
        assert part.features.chunks[0] <= 44  # a part never grows: no larger chunks


def test_rerun_on_a_complete_store_writes_nothing(tmp_path, est, digits):
    path = run(est, digits[0], tmp_path / "f.h5")
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*.h5")}
    assert run(est, digits[0], path) == path
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*.h5")} == before


KILLED_CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import torch
    import featurekit
    from featurekit.store import FeatureStore, extract

    torch.set_num_threads(1)  # as tests/conftest.py, so floats match the parent's
    path, model, data = sys.argv[1:4]
    real_append, calls = FeatureStore.append, []

    def append(self, *args, **kwargs):
        if self.path.name == "part-00003.h5.tmp":
            calls.append(1)
            if len(calls) == 2:  # mid-part: one batch of part 3 written, not committed
                os.kill(os.getpid(), signal.SIGKILL)
        return real_append(self, *args, **kwargs)

    FeatureStore.append = append
    extract(featurekit.load(model), np.load(data), path, part_size=64, batch_size=32)
""")


def test_kill_9_mid_part_then_resume_redoes_only_the_missing_parts(
        tmp_path, est, digits, reference):
    X, _ = digits
    path, model, data = tmp_path / "f.h5", tmp_path / "m.pt", tmp_path / "x.npy"
    est.save(model)
    np.save(data, X)
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(path), str(model),
                            str(data)], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    folder = store_parts.parts_dir(path)
    assert sorted(p.name for p in folder.glob("part-*")) == [
        "part-00000.h5", "part-00001.h5", "part-00002.h5", "part-00003.h5.tmp"]
    with FeatureStore(path) as store:  # readers see the committed parts only
        assert len(store) == 3 * PART and not store.complete
        np.testing.assert_array_equal(store.ids[:], np.arange(3 * PART))
        np.testing.assert_array_equal(store[:], reference[:3 * PART])
    committed = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
                 for p in folder.glob("*.h5")}

    run(est, X, path)

    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.h5")
            if p.name in committed} == committed, "committed parts must not be redone"
    assert not list(tmp_path.rglob("*.tmp"))
    with FeatureStore(path) as store:
        assert store.complete and len(store) == N
        ids = store.ids[:]
        assert np.array_equal(np.sort(ids), np.arange(N)) and len(np.unique(ids)) == N
        np.testing.assert_array_equal(store[:], reference)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, est, digits, reference,
                                                       monkeypatch):
    X, y = digits
    real_append, calls = FeatureStore.append, []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "append", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(est, X, tmp_path / "f.h5", labels=y)
    monkeypatch.undo()
    assert len(list(store_parts.parts_dir(tmp_path / "f.h5").glob("part-*.h5"))) == 2
    assert not list(tmp_path.rglob("*.tmp"))
    run(est, X, tmp_path / "f.h5", labels=y)
    with FeatureStore(tmp_path / "f.h5") as store:
        np.testing.assert_array_equal(store[:], reference)
        np.testing.assert_array_equal(store.ids[:], np.arange(N))
        np.testing.assert_array_equal(store.labels[:], y)


def test_readers_never_see_a_half_written_part(tmp_path, est, digits, monkeypatch):
    path, seen = tmp_path / "f.h5", []
    real_append = FeatureStore.append

    def append_and_read(self, *args, **kwargs):
        real_append(self, *args, **kwargs)
        if path.exists():
            with FeatureStore(path) as reader:
                ids = reader.ids[:]
                seen.append(len(reader))
                assert len(reader) % PART == 0 and np.array_equal(ids, np.arange(len(ids)))
                assert np.isfinite(reader[:]).all()

    monkeypatch.setattr(FeatureStore, "append", append_and_read)
    run(est, digits[0], path)
    assert seen[0] == PART and seen[-1] == 4 * PART and sorted(seen) == seen


def test_another_model_is_refused_and_nothing_is_overwritten(
        tmp_path, est, other_est, digits, monkeypatch):
    X, _ = digits
    path = run(est, X, tmp_path / "f.h5", metadata={"model": "/models/first.pt"})
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as error:
        run(other_est, X, path)
    message = str(error.value)
    assert "holds features of another model" in message and "/models/first.pt" in message
    assert weights_sha256(est.modules_)[:12] in message
    assert weights_sha256(other_est.modules_)[:12] in message
    assert "another path" in message and "remove f.h5 and f.h5.parts/" in message
    assert snapshot(tmp_path) == before


def test_an_interrupted_store_of_another_model_is_refused(tmp_path, est, other_est, digits,
                                                          monkeypatch):
    X, _ = digits
    real_append, calls = FeatureStore.append, []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "append", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(est, X, tmp_path / "f.h5")
    monkeypatch.undo()
    (tmp_path / "f.h5").unlink()  # only the committed part is left: it knows its model
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="another model"):
        run(other_est, X, tmp_path / "f.h5")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("change, message", [
    (lambda X: {"X": X[:-1]}, "extracted from other data .*299 samples"),
    (lambda X: {"X": X[::-1].copy()}, "extracted from other data"),
    (lambda X: {"dtype": "float16"}, "stores float32 features; pass dtype='float32'"),
])
def test_other_data_or_dtype_is_refused(tmp_path, est, digits, change, message):
    X, _ = digits
    path = run(est, X, tmp_path / "f.h5")
    before = snapshot(tmp_path)
    kwargs = {"X": X, **change(X)}
    with pytest.raises(InputError, match=message):
        run(est, kwargs.pop("X"), path, **kwargs)
    assert snapshot(tmp_path) == before


def test_part_change_is_refused(tmp_path, digits):
    X, _ = digits
    content = featurekit.create("pretrained", **TINY).fit(X)
    path = run(content, X, tmp_path / "f.h5")
    content.set_params(part="features")
    assert run(content, X, path) == path  # the same part, named
    content.set_params(part=["features", "features"])
    with pytest.raises(InputError, match="part= now selects"):
        run(content, X, path)


@pytest.mark.parametrize("kind", ["text", "foreign_hdf5", "one_piece_store", "truncated"])
def test_foreign_or_corrupt_files_are_refused_and_kept(tmp_path, est, digits, kind):
    path = tmp_path / "f.h5"
    if kind == "text":
        path.write_text("my notes")
        message = "not HDF5"
    elif kind == "foreign_hdf5":
        with h5py.File(path, "w") as f:
            f["data"] = np.arange(3)
        message = "HDF5 file but not a featurekit feature store"
    elif kind == "one_piece_store":
        write_store(path, np.ones((3, 2)))
        message = "written in one piece"
    else:
        run(est, digits[0], path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        message = "f.h5"
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match=message) as error:
        run(est, digits[0], path)
    assert "remove" in str(error.value)
    assert snapshot(tmp_path) == before


def test_missing_part_is_refused_by_readers_and_redone_by_extract(tmp_path, est, digits,
                                                                  reference):
    path = run(est, digits[0], tmp_path / "f.h5")
    store_parts.part_path(path, 2).unlink()
    with pytest.raises(InputError, match=r"lacks 1 of its 5 parts \(part-00002\.h5\)"):
        FeatureStore(path)
    run(est, digits[0], path)
    with FeatureStore(path) as store:
        np.testing.assert_array_equal(store[:], reference)


def test_resume_false_refuses_an_existing_store(tmp_path, est, digits):
    path = run(est, digits[0], tmp_path / "f.h5")
    with pytest.raises(InputError, match="already exists; pass resume=True"):
        run(est, digits[0], path, resume=False)


def test_second_writer_is_refused(tmp_path, est, digits):
    path = tmp_path / "f.h5"
    with store_parts.locked(path):
        with pytest.raises(InputError, match="Another process is writing"):
            run(est, digits[0], path)
    run(est, digits[0], path)


def test_full_disk_keeps_committed_parts_and_resumes(tmp_path, est, digits, reference,
                                                     monkeypatch):
    X, _ = digits
    real_append, calls = FeatureStore.append, []

    def disk_full(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # the second batch of part 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "append", disk_full)
    with pytest.raises(StoreError) as error:
        run(est, X, tmp_path / "f.h5")
    monkeypatch.undo()
    assert isinstance(error.value, (FeaturekitError, OSError))
    assert error.value.errno == errno.ENOSPC
    assert "No space left on device. The disk is full: free some space." in str(error.value)
    assert "The 2 parts committed (128 rows) are kept; run the extraction again" in str(
        error.value)
    assert not list(tmp_path.rglob("*.tmp"))
    with FeatureStore(tmp_path / "f.h5") as store:
        np.testing.assert_array_equal(store[:], reference[:128])
    run(est, X, tmp_path / "f.h5")
    with FeatureStore(tmp_path / "f.h5") as store:
        np.testing.assert_array_equal(store[:], reference)


def test_read_only_target(tmp_path, est, digits, monkeypatch):
    X, _ = digits

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(store_parts.Path, "mkdir", read_only)
    with pytest.raises(StoreError, match="read-only file system: choose another path"):
        run(est, X, tmp_path / "new.h5")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []

    path = run(est, X[:100], tmp_path / "f.h5")  # an existing store, index rewrites refused
    store_parts.part_path(path, 1).unlink()
    before = snapshot(tmp_path)
    monkeypatch.setattr(store_parts, "commit_file", read_only)
    with pytest.raises(StoreError, match=r"Nothing was committed|1 parts committed"):
        run(est, X[:100], path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before


def test_bad_columns_write_nothing(tmp_path, est, digits):
    X, y = digits
    with pytest.raises(InputError, match="labels has 3 entries but X has 300"):
        run(est, X, tmp_path / "f.h5", labels=[1, 2, 3])
    with pytest.raises(InputError, match="labels must be a 1-D array of integers"):
        run(est, X, tmp_path / "f.h5", labels=y.astype(str))
    with pytest.raises(InputError, match="keys has 2 entries"):
        run(est, X, tmp_path / "f.h5", keys=["a", "b"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"part_size": 0}, "'part_size' parameter of extract must be an int >= 1"),
    ({"batch_size": 1.5}, "'batch_size' parameter"),
    ({"dtype": "float64"}, "'dtype' parameter of extract must be 'float32' or 'float16'"),
    ({"compression": "zstd"}, "'compression' parameter"),
    ({"resume": "yes"}, "'resume' parameter"),
])
def test_bad_parameters(tmp_path, est, digits, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        run(est, digits[0], tmp_path / "f.h5", **kwargs)


def test_float16_and_compression(tmp_path, est, digits, reference):
    path = run(est, digits[0], tmp_path / "f.h5", dtype="float16", compression="gzip")
    with FeatureStore(path) as store:
        assert store.dtype == np.float16
        np.testing.assert_array_equal(store[:], reference.astype(np.float16))
    with FeatureStore(store_parts.part_path(path, 0)) as part:
        assert part.features.compression == "gzip"


def test_lazy_inputs_h5py_images_and_a_store(tmp_path, digits):
    X, _ = digits
    images = (X.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8)
    cnn = featurekit.create("pretrained", backbone="small_cnn", backbone_kwargs={"width": 2},
                            device="cpu", random_state=0, verbose=0).fit(images)
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["x"] = images
    with h5py.File(tmp_path / "images.h5", "r") as f:
        path = run(cnn, f["x"], tmp_path / "cnn.h5")
    with FeatureStore(path) as store:
        np.testing.assert_array_equal(store[:], cnn.transform(images))
        assert store.metadata["input_description"].startswith("HDF5 dataset /x of ")
        # a store of features is itself a lazy tabular input: extract from it again
        mlp = featurekit.create("pretrained", **TINY).fit(store)
        second = run(mlp, store, tmp_path / "second.h5")
        expected = mlp.transform(store[:])
    with FeatureStore(second) as store:
        np.testing.assert_array_equal(store[:], expected)


def test_progress_bar_only_on_a_terminal_and_verbose(tmp_path, est, digits, monkeypatch,
                                                     capsys):
    run(est, digits[0], tmp_path / "a.h5", verbose=1)
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    run(est, digits[0], tmp_path / "b.h5", verbose=0)
    assert capsys.readouterr().err == ""
    run(est, digits[0], tmp_path / "c.h5", verbose=1)
    assert "extract c.h5" in capsys.readouterr().err


MEMORY_CHILD = textwrap.dedent("""
    import resource, sys
    import h5py, torch
    import featurekit
    from featurekit.store import extract

    torch.set_num_threads(1)
    model = featurekit.load(sys.argv[1])
    for data in sys.argv[2:]:  # N rows, then 10 N: the peak so far after each
        with h5py.File(data, "r") as f:
            extract(model, f["x"], data + ".features.h5", part_size=2048, batch_size=256,
                    verbose=0)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_peak_memory_does_not_grow_with_n(tmp_path):
    """10x the rows must not raise the peak resident memory by 10%: the extra 9,000 rows
    (147 MB of input, 18 MB of features) stream through batches of 256.

    Loading the input instead (``transform(f["x"][:])``) raises the peak by about 16%
    over the ~1 GB that torch alone takes."""
    width, rng = 4096, np.random.default_rng(0)
    model = featurekit.create("pretrained", backbone="mlp", backbone_kwargs={"hidden": (512,)},
                              device="cpu", random_state=0, verbose=0)
    model.fit(rng.random((64, width), dtype=np.float32)).save(tmp_path / "m.pt")
    sizes = (1000, 10000)
    for n in sizes:
        with h5py.File(tmp_path / f"x{n}.h5", "w") as f:
            x = f.create_dataset("x", (n, width), np.float32)
            for start in range(0, n, 1000):
                x[start:start + 1000] = rng.random((1000, width), dtype=np.float32)
    child = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(tmp_path / "m.pt"),
         *[str(tmp_path / f"x{n}.h5") for n in sizes]],
        capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    small, large = map(int, child.stdout.split())
    for n in sizes:
        with FeatureStore(tmp_path / f"x{n}.h5.features.h5") as store:
            assert store.complete and store.shape == (n, 512)
    assert large <= 1.10 * small, (small, large)


# -- the command line ----------------------------------------------------------------

@pytest.fixture
def cli_setup(tmp_path, est, digits):
    X, y = digits
    np.savez(tmp_path / "digits.npz", x=X, y=y)
    est.save(tmp_path / "m.pt")
    return tmp_path / "m.pt", tmp_path / "digits.npz", tmp_path / "f.h5"


def invoke(args):
    result = CliRunner().invoke(get_cli(), [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_cli_rerun_after_an_interruption_resumes(cli_setup, digits, reference, monkeypatch):
    model, data, out = cli_setup
    real_append, calls = FeatureStore.append, []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "append", interrupt)
    args = ["extract", model, data, "-o", out, "--part-size", PART, "--batch-size", BATCH]
    first = invoke(args)
    assert first.exit_code == 1 and "Aborted" in first.output
    monkeypatch.undo()
    second = invoke(args)
    assert second.exit_code == 0, second.output
    assert "resumed: 192 of 300 rows were already extracted" in second.output
    assert "300 rows x 8 features" in second.output
    with FeatureStore(out) as store:
        np.testing.assert_array_equal(store[:], reference)
        np.testing.assert_array_equal(store.labels[:], digits[1])
        meta = store.metadata
    assert meta["model"] == str(model) and meta["input"] == str(data)
    assert meta["input_description"].startswith("digits.npz: x (300, 64)")


def test_cli_refuses_another_model_in_one_line(cli_setup, other_est, tmp_path):
    model, data, out = cli_setup
    assert invoke(["extract", model, data, "-o", out, "-q"]).exit_code == 0
    other_est.save(tmp_path / "other.pt")
    result = invoke(["extract", tmp_path / "other.pt", data, "-o", out])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert "another model" in line and "m.pt" in line and "another path (-o)" in line


def test_cli_full_disk_is_one_line_and_keeps_parts(cli_setup, monkeypatch):
    model, data, out = cli_setup

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_parts, "commit_file", disk_full)
    result = invoke(["extract", model, data, "-o", out, "--part-size", PART])
    assert result.exit_code == 1
    assert "Error: Cannot write the feature store" in result.output
    assert "The disk is full" in result.output and "Nothing was committed" in result.output
    assert not out.exists()
