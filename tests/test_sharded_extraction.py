"""Sharded extraction: N processes write the parts of one store, shown as one dataset."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
from click.testing import CliRunner
from sklearn.datasets import load_digits

import featurekit
from featurekit import store_parts
from featurekit.cli import get_cli
from featurekit.exceptions import InputError, ParameterError
from featurekit.store import FeatureStore, StoreError, extract

TINY = dict(backbone="mlp", backbone_kwargs={"hidden": (8,)}, device="cpu", random_state=0,
            verbose=0)
N, PART, BATCH = 300, 32, 16  # 10 parts of 2 batches each (the last: 12 rows)


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
def reference(est, digits, tmp_path_factory):
    """The store of a single-process extraction, read whole."""
    path = extract(est, digits[0], tmp_path_factory.mktemp("single") / "f.h5",
                   labels=digits[1], part_size=PART, batch_size=BATCH)
    with FeatureStore(path) as store:
        return store.read()


def run(est, X, path, shard, **kwargs):
    return extract(est, X, path, shard=shard, **{"part_size": PART, "batch_size": BATCH,
                                                 **kwargs})


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_complete(path, reference):
    """One dataset of every row exactly once, in input order, as one process writes it."""
    with FeatureStore(path) as store:
        assert store.complete and store.features.is_virtual
        data = store.read()
        assert [p.name for p in store.parts] == [f"part-{k:05d}.h5" for k in range(10)]
    np.testing.assert_array_equal(data["ids"], np.arange(N))  # each id once, in order
    np.testing.assert_allclose(data["features"], reference["features"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(data["labels"], reference["labels"])
    assert not list(path.parent.rglob("*.tmp"))


SHARD_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    import torch
    import featurekit
    from featurekit import store_parts
    from featurekit.store import FeatureStore, extract

    torch.set_num_threads(1)  # as tests/conftest.py, so floats match the parent's
    path, model, data, rank, kill = sys.argv[1:6]
    rank, kill = int(rank), kill == "kill"
    real_write, real_append, written = store_parts.write_part, FeatureStore.append, []

    def write_part(*args, **kwargs):
        part = real_write(*args, **kwargs)
        written.append(part)
        if len(written) == 1:
            # Hold on until the other shard has committed a part too, so the two are
            # surely writing at the same time, each adding to the other's index.
            folder, deadline = store_parts.parts_dir(path), time.monotonic() + 120
            while len(list(folder.glob("part-*.h5"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        return part

    def append(self, *args, **kwargs):
        # kill -9 mid-part: one batch of this shard's second part written, not committed
        if kill and written and self.path.name.endswith(".tmp") and self.ids is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_append(self, *args, **kwargs)

    store_parts.write_part, FeatureStore.append = write_part, append
    X, y = np.load(data)["x"], np.load(data)["y"]
    extract(featurekit.load(model), X, path, labels=y, part_size=32, batch_size=16,
            shard=(rank, 2))
""")


def start_shards(tmp_path, est, digits, ranks, kill=()):
    """Shards ``ranks`` of 2, each in its own process, writing tmp_path/f.h5 together."""
    path, model, data = tmp_path / "f.h5", tmp_path / "m.pt", tmp_path / "x.npz"
    est.save(model)
    np.savez(data, x=digits[0], y=digits[1])
    return path, [subprocess.Popen(
        [sys.executable, "-c", SHARD_CHILD, str(path), str(model), str(data), str(rank),
         "kill" if rank in kill else "run"], stderr=subprocess.PIPE, text=True)
        for rank in ranks]


def finish(children):
    """Each child's exit status and stderr, once it has ended."""
    errors = [child.communicate(timeout=240)[1] for child in children]
    return [(child.returncode, err) for child, err in zip(children, errors)]


def wait_for_part(path, k, child):
    """Until ``child`` has committed part ``k`` (it then waits for one of this process)."""
    deadline = time.monotonic() + 240
    while not store_parts.part_path(path, k).exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the child committed nothing in 4 minutes"
        time.sleep(0.02)


def test_two_processes_write_one_store(tmp_path, est, digits, reference):
    """Shard 1 in a child process and shard 0 in this one, writing at the same time."""
    path, (child,) = start_shards(tmp_path, est, digits, (1,))
    wait_for_part(path, 1, child)
    run(est, digits[0], path, (0, 2), labels=digits[1])
    ((code, err),) = finish([child])
    assert code == 0, err
    assert_complete(path, reference)
    for k in range(10):  # each part written by its shard, as a single process writes it
        with FeatureStore(store_parts.part_path(path, k)) as part:
            assert (part.metadata["start"], part.metadata["stop"]) == (32 * k, min(N, 32 * k + 32))
    with FeatureStore(path) as store:
        assert store.metadata["n_samples"] == N and store.metadata["completed"]
    # the shards' own locks go with them; the store's two stay, as the one of a plain run
    assert sorted(p.name for p in store_parts.parts_dir(path).glob(".*")) == [
        ".index.lock", ".lock"]


@pytest.mark.skipif(fcntl is None or not Path("/proc/self/fd").is_dir(),
                    reason="needs flock and /proc")
def test_a_shard_lock_unlinked_between_open_and_lock_is_taken_again(tmp_path, monkeypatch):
    """A shard finishing unlinks its lock file; a process that opened the file just before
    must not hold a lock on a file nobody else can find (two writers of one shard)."""
    path = tmp_path / "feats.h5"
    lock = store_parts.parts_dir(path) / ".shard-0-of-2.lock"
    real, raced = store_parts._lock_or_refuse, []

    def finishing_shard_unlinks(fd, kind, message):
        if not raced and os.readlink(f"/proc/self/fd/{fd}").endswith(lock.name):
            raced.append(fd)
            lock.unlink()  # after this process opened it, before it locks it
        real(fd, kind, message)

    monkeypatch.setattr(store_parts, "_lock_or_refuse", finishing_shard_unlinks)
    with store_parts.locked(path, shard=(0, 2)):
        assert raced and lock.exists()
        other = os.open(lock, os.O_RDWR)
        try:  # the file at the path is the one locked: a second shard 0 is refused
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)


def test_a_shard_killed_mid_part_resumes_alone(tmp_path, est, digits, reference):
    """Shard 1 in a child process, killed in its second part while shard 0 (this
    process) writes; then shard 1 again."""
    path, (child,) = start_shards(tmp_path, est, digits, (1,), kill=(1,))
    folder = store_parts.parts_dir(path)
    wait_for_part(path, 1, child)
    run(est, digits[0], path, (0, 2), labels=digits[1])
    ((code, err),) = finish([child])
    assert code == -signal.SIGKILL, err
    # shard 0 wrote the even parts; shard 1 committed part 1 and died writing part 3
    assert sorted(p.name for p in folder.glob("part-*")) == sorted([
        *[f"part-{k:05d}.h5" for k in (0, 1, 2, 4, 6, 8)], "part-00003.h5.tmp"])
    with FeatureStore(path) as store:  # readable: the committed parts only, whole rows
        assert not store.complete
        ids = store.ids[:]
        assert len(ids) == 6 * PART and len(np.unique(ids)) == len(ids)
        np.testing.assert_array_equal(store[:], reference["features"][ids])
    committed = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.h5")}

    run(est, digits[0], path, shard=(1, 2), labels=digits[1])  # shard 1 again

    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.h5")
            if p.name in committed} == committed, "committed parts must not be redone"
    assert_complete(path, reference)


def test_shards_in_turn_equal_one_process(tmp_path, est, digits, reference):
    X, y = digits
    keys = [f"img/{i}.png" for i in range(N)]
    path = tmp_path / "f.h5"
    for rank in (2, 0):
        assert run(est, X, path, (rank, 3), labels=y, keys=keys) == path
        with FeatureStore(path) as store:  # a reader sees whole parts in between
            assert not store.complete and np.isfinite(store[:]).all()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*.h5")}
    run(est, X, path, (0, 3), labels=y, keys=keys)  # a finished shard writes nothing
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*.h5")} == before
    run(est, X, path, (1, 3), labels=y, keys=keys, part_size=50)  # takes the store's
    assert_complete(path, reference)
    with FeatureStore(path) as store:
        assert store.keys.asstr()[:].tolist() == keys
        assert store.metadata["model_sha256"] == featurekit.extraction.weights_sha256(
            est.modules_)


def test_a_shard_of_another_model_is_refused(tmp_path, est, other_est, digits):
    X, _ = digits
    path = tmp_path / "f.h5"
    run(est, X, path, (0, 2))
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="holds features of another model") as error:
        run(other_est, X, path, (1, 2))
    assert featurekit.extraction.weights_sha256(other_est.modules_)[:12] in str(error.value)
    with pytest.raises(InputError, match="extracted from other data"):
        run(est, X[::-1].copy(), path, (1, 2))
    assert snapshot(tmp_path) == before


def test_the_first_shard_fixes_the_model_before_any_part(tmp_path, est, other_est, digits,
                                                          monkeypatch):
    """A shard that has not committed anything yet already refuses the others' mismatch."""
    X, _ = digits

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_parts, "write_part", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(est, X, tmp_path / "f.h5", (0, 2))
    monkeypatch.undo()
    with FeatureStore(tmp_path / "f.h5") as store:
        assert len(store) == 0 and store.metadata["n_samples"] == N
    with pytest.raises(InputError, match="another model"):
        run(other_est, X, tmp_path / "f.h5", (1, 2))


def test_locks_refuse_what_would_write_a_part_twice(tmp_path, est, digits):
    X, _ = digits
    path = tmp_path / "f.h5"
    with store_parts.locked(path, shard=(0, 2)):  # a live shard 0 of 2
        with pytest.raises(InputError, match=r"Another process is writing shard 0/2"):
            run(est, X, path, (0, 2))
        with pytest.raises(InputError, match=r"Shards of 2 processes are writing .* shard 1/3"):
            run(est, X, path, (1, 3))
        with pytest.raises(InputError, match="Another process is writing the feature store"):
            extract(est, X, path)  # a plain writer
        run(est, X, path, (1, 2))  # the other shard of the same run goes ahead
        with FeatureStore(path, mode="a") as store:
            with pytest.raises(InputError, match="Another process is writing"):
                store.set_metadata({"note": 1})
    with store_parts.locked(path):  # a plain writer
        with pytest.raises(InputError, match=r"Another process \(not a shard\) is writing"):
            run(est, X, path, (0, 2))
    run(est, X, path, (0, 2))
    with FeatureStore(path) as store:
        assert store.complete and store.ids[:].tolist() == list(range(N))


@pytest.mark.parametrize("code, hint", [(errno.ENOSPC, "The disk is full"),
                                        (errno.EROFS, "read-only file system")])
def test_a_refused_index_rewrite_keeps_the_store(tmp_path, est, digits, reference,
                                                 monkeypatch, code, hint):
    X, y = digits
    path = tmp_path / "f.h5"
    run(est, X, path, (1, 2), labels=y)
    before = path.read_bytes()
    real_commit = store_parts.commit_file

    def refuse_the_index(tmp, final):
        if final == path:
            raise OSError(code, os.strerror(code))
        return real_commit(tmp, final)

    monkeypatch.setattr(store_parts, "commit_file", refuse_the_index)
    with pytest.raises(StoreError, match=hint) as error:
        run(est, X, path, (0, 2), labels=y)
    monkeypatch.undo()
    assert error.value.errno == code and "parts committed" in str(error.value)
    assert path.read_bytes() == before  # the index as it was: shard 1's parts
    with FeatureStore(path) as store:
        assert store.ids[:].tolist() == [i for i in range(N) if (i // PART) % 2 == 1]
    run(est, X, path, (0, 2), labels=y)  # the committed, unlisted part 0 is listed now
    assert_complete(path, reference)


@pytest.mark.parametrize("shard, message", [
    ((2, 2), "must be \\(rank, world_size\\) with 0 <= rank < world_size"),
    ((0, 0), "0 <= rank < world_size"),
    ((-1, 2), "0 <= rank < world_size"),
    ((0.0, 2), "Got \\(0.0, 2\\)"),
    ((True, 2), "Got \\(True, 2\\)"),
    ("0/2", "or 'env'. Got '0/2'"),
])
def test_bad_shards(tmp_path, est, digits, shard, message):
    with pytest.raises(ParameterError, match=message):
        run(est, digits[0], tmp_path / "f.h5", shard)
    assert list(tmp_path.iterdir()) == []


def test_shard_env_and_its_limits(tmp_path, est, digits, monkeypatch):
    X, _ = digits
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ParameterError, match="RANK and WORLD_SIZE .* launch with torchrun"):
        run(est, X, tmp_path / "f.h5", "env")
    with pytest.raises(ParameterError, match="needs resume=True"):
        run(est, X, tmp_path / "f.h5", (0, 2), resume=False)
    monkeypatch.setattr(store_parts, "fcntl", None)
    with pytest.raises(ParameterError, match="needs POSIX file locks"):
        run(est, X, tmp_path / "f.h5", (0, 2))
    monkeypatch.undo()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run(est, X, tmp_path / "f.h5", "env")
    assert sorted(p.name for p in store_parts.parts_dir(tmp_path / "f.h5").glob("part-*")) == [
        f"part-{k:05d}.h5" for k in (1, 3, 5, 7, 9)]


# -- the command line ----------------------------------------------------------------

def invoke(args):
    result = CliRunner().invoke(get_cli(), [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_cli_nproc_2_and_shard(tmp_path, est, digits, reference):
    X, y = digits
    data, model, out = tmp_path / "digits.npz", tmp_path / "m.pt", tmp_path / "f.h5"
    np.savez(data, x=X, y=y)
    est.save(model)
    common = [model, data, "--part-size", PART, "--batch-size", BATCH]
    result = invoke(["extract", *common, "-o", out, "--nproc", 2])
    assert result.exit_code == 0, result.output
    assert f"300 rows x 8 features -> {out} (2 processes)" in result.output
    assert_complete(out, reference)
    # one shard per machine: here, one after the other
    out = tmp_path / "g.h5"
    first = invoke(["extract", *common, "-o", out, "--shard", "1/2"])
    assert first.exit_code == 0, first.output
    assert f"shard 1/2 done; 140 rows x 8 features -> {out} so far" in first.output
    second = invoke(["extract", *common, "-o", out, "--shard", "0/2"])
    assert second.exit_code == 0, second.output
    assert f"300 rows x 8 features -> {out}" in second.output
    assert_complete(out, reference)


@pytest.mark.parametrize("args, message", [
    (["--shard", "2/2"], "expected I/N with 0 <= I < N"),
    (["--shard", "a"], "expected I/N"),
    (["--shard", "0/2", "--nproc", "2"], "give --nproc or --shard, not both"),
])
def test_cli_bad_shard_options(tmp_path, est, args, message):
    est.save(tmp_path / "m.pt")
    result = invoke(["extract", tmp_path / "m.pt", tmp_path / "m.pt", "-o", tmp_path / "f.h5",
                     *args])
    assert result.exit_code == 2 and message in result.output
