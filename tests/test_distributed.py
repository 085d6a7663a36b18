"""Data-parallel training (featurekit.distributed) with 2 gloo processes on CPU.

Two spawned processes train on fixed halves of every global batch; the
results are compared with the same run in this one process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import featurekit
from featurekit import distributed
from featurekit.cli import cli
from featurekit.exceptions import ParameterError, TrainingError

import distributed_workers as workers

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Every run of ``workers.RUNS`` trained by 2 processes (one launch for all)."""
    out = tmp_path_factory.mktemp("ddp")
    distributed.launch(workers.train, 2, (["supervised", "moco"], str(out)), threads=1)
    distributed.launch(workers.train, 2, (["simclr"], str(out)), threads=1,
                       sync_batchnorm=True)
    return {tag: [torch.load(out / f"{tag}-rank{r}.pt", weights_only=True) for r in (0, 1)]
            for tag in workers.RUNS}


def test_mlp_without_batch_norm_matches_one_process(two_processes):
    one = workers.summary(workers.fit_run("supervised"))
    ranks = two_processes["supervised"]
    for name, value in one["state"].items():
        for r, run in enumerate(ranks):
            torch.testing.assert_close(run["state"][name], value, rtol=1e-5, atol=1e-6,
                                       msg=f"rank {r}: {name} differs from one process")
    np.testing.assert_allclose(ranks[0]["history"]["loss"], one["history"]["loss"], rtol=1e-5)
    # The runs did train: the parameters moved from their initial values.
    start = featurekit.create("supervised", **workers.RUNS["supervised"][1])
    X, y = workers.digits()
    start.set_params(max_epochs=0).fit(X, y)
    moved = [not torch.allclose(start.modules_.state_dict()[k], v) for k, v in one["state"].items()
             if v.is_floating_point()]
    assert all(moved)


def test_simclr_with_sync_batchnorm_matches_one_process(two_processes):
    one = workers.summary(workers.fit_run("simclr"))
    ranks = two_processes["simclr"]
    # Cross-rank negatives through ctx.all_gather and global batch statistics.
    np.testing.assert_allclose(ranks[0]["history"]["loss"], one["history"]["loss"], atol=1e-3)
    for name, value in one["state"].items():
        torch.testing.assert_close(ranks[1]["state"][name], ranks[0]["state"][name])
        # The backbone (what transform uses). The projector's linear biases sit before
        # batch norm, whose exact gradient is zero: Adam turns float noise there into
        # steps of lr's size, so they agree only to ~1e-3 by construction.
        if name.startswith("backbone.") and value.is_floating_point():
            torch.testing.assert_close(ranks[0]["state"][name], value, rtol=1e-3, atol=1e-3)


def test_moco_queue_and_momentum_encoder_agree_across_ranks(two_processes):
    r0, r1 = (run["state"] for run in two_processes["moco"])
    assert set(r0) == set(r1)
    for name in r0:
        torch.testing.assert_close(r0[name], r1[name], msg=f"{name} differs between the ranks")
    # The queue holds keys from both ranks' slices: it is the gathered global batch.
    assert int(r0["queue.ptr"]) == (2 * (256 // 64) * 64) % 128
    assert np.isfinite(two_processes["moco"][0]["history"]["loss"]).all()


class _FakeWorld(distributed.World):
    """Rank 0 of 2 without a process group: only what runs before any collective."""

    def broadcast_seed(self, seed):
        return seed


def test_refuses_untested_methods_and_uneven_batches(monkeypatch):
    monkeypatch.setattr(distributed, "current", lambda: _FakeWorld(0, 2))
    X, _ = workers.digits(64)
    with pytest.raises(TrainingError, match="not tested for training on several processes"):
        featurekit.create("byol", backbone="mlp", max_epochs=1, batch_size=32).fit(X)
    with pytest.raises(ParameterError, match="batch_size=33 is cut .* multiple of 2"):
        featurekit.create("simclr", backbone="mlp", max_epochs=1, batch_size=33,
                          verbose=0).fit(X)
    with pytest.raises(ParameterError, match=r"global batch \(63: X has fewer samples than "
                                             r"batch_size=64\)"):
        featurekit.create("simclr", backbone="mlp", max_epochs=1, batch_size=64,
                          verbose=0).fit(X[:63])


def test_launch_checks_nproc():
    with pytest.raises(ParameterError, match="positive int"):
        distributed.launch(print, 0)


def test_init_outside_torchrun_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ParameterError, match="torchrun"):
        distributed.init()


def test_cli_fit_nproc(tmp_path):
    X, y = workers.digits()
    np.savez(tmp_path / "digits.npz", x=X, y=y)
    model = tmp_path / "model.pt"
    result = CliRunner().invoke(cli, ["fit", "supervised", str(tmp_path / "digits.npz"), "-o",
                                      str(model), "--backbone", "mlp", "--max-epochs", "1",
                                      "--batch-size", "64", "--random-state", "0", "--nproc", "2",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    est = featurekit.load(str(model))
    assert est.n_epochs_ == 1 and est.transform(X[:5]).shape == (5, 256)
