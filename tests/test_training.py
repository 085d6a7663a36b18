"""The training loop: kill -9 and resume, NaN guard, warm start, eval_set,
schedules, progress output and RNG hygiene."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import featurekit
from contract_methods import _Common
from featurekit.checkpoint import Checkpointer
from featurekit.exceptions import TrainingError
from featurekit.method import OptimizerSpec
from featurekit.registry import register_plugin, unregister_plugin
from featurekit.training import schedule_factor

TINY = dict(backbone="mlp", backbone_kwargs={"hidden": (16,)}, batch_size=16, device="cpu",
            random_state=0, verbose=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


CHILD = textwrap.dedent("""
    import sys, pathlib
    import torch
    from sklearn.datasets import load_digits
    import featurekit
    from featurekit import hookimpl
    from featurekit.registry import register_plugin

    torch.set_num_threads(1)  # as tests/conftest.py, so floats match the parent's
    marker = pathlib.Path(sys.argv[2])

    class Marker:
        @hookimpl
        def featurekit_on_epoch_end(self, estimator, epoch, history):
            if epoch == 2:
                marker.write_text("2")

    register_plugin(Marker(), "marker")
    X, _ = load_digits(return_X_y=True)
    featurekit.create("simclr", backbone="mlp", backbone_kwargs={"hidden": (16,)},
                      batch_size=16, device="cpu", random_state=0, verbose=0,
                      max_epochs=8, checkpoint_dir=sys.argv[1]).fit(X[:480])
""")


def test_kill_9_mid_fit_then_resume_matches_uninterrupted(tmp_path, digits):
    X, _ = digits
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "ckpt"), str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the child fit ended before epoch 2"
            assert time.monotonic() < deadline, "the child fit did not reach epoch 2"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    (run,) = (tmp_path / "ckpt").iterdir()
    state = Checkpointer(tmp_path / "ckpt", run.name).load()
    assert 2 <= state["epoch"] < 8 and not state["finished"]

    seen = []

    class Count:
        @featurekit.hookimpl
        def featurekit_on_epoch_end(self, estimator, epoch, history):
            seen.append(epoch)

    register_plugin(Count(), "count")
    try:
        resumed = featurekit.create("simclr", max_epochs=8, checkpoint_dir=tmp_path / "ckpt",
                                    **TINY).fit(X[:480])
    finally:
        unregister_plugin("count")
    assert seen[0] == state["epoch"] + 1, "resume must continue after the last checkpoint"
    assert resumed.n_epochs_ == 8
    reference = featurekit.create("simclr", max_epochs=8, **TINY).fit(X[:480])
    np.testing.assert_array_equal(resumed.transform(X[:480]), reference.transform(X[:480]))
    assert resumed.history_["loss"] == pytest.approx(reference.history_["loss"], rel=1e-6)


class NanAtStep(_Common):
    """A method whose loss turns NaN at the fourth step."""

    name, family = "nan_at_step", "test"

    def build(self, spec):
        return torch.nn.ModuleDict({"backbone": spec.make_backbone()})

    def optimizers(self, modules):
        return {"model": OptimizerSpec(modules.parameters(), "sgd", lr=0.01)}

    def training_step(self, modules, batch, ctx):
        loss = modules["backbone"](batch.x).pow(2).mean()
        if ctx.step == 3:
            loss = loss * float("nan")
        ctx.optimize("model", loss)


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path, digits):
    X, _ = digits
    est = NanAtStep(**{**TINY, "batch_size": 64}, max_epochs=5, checkpoint_dir=tmp_path)
    X = X[:128]  # two steps per epoch: the NaN comes in epoch 2, step 4
    with pytest.raises(TrainingError, match=r"epoch 2, step 4.*last good checkpoint"):
        est.fit(X)
    (run,) = tmp_path.iterdir()
    state = Checkpointer(tmp_path, run.name).load()
    assert state["epoch"] == 1 and not state["finished"]
    assert all(torch.isfinite(v).all() for v in state["modules"].values() if v.is_floating_point())


def test_finished_run_is_not_reused_but_warm_start_continues(tmp_path, digits):
    X, _ = digits
    X = X[:200]
    first = featurekit.create("simclr", max_epochs=2, checkpoint_dir=tmp_path, **TINY).fit(X)
    again = featurekit.create("simclr", max_epochs=2, checkpoint_dir=tmp_path, **TINY).fit(X)
    assert again.history_["loss"] == first.history_["loss"], "a finished run trains anew, identically"
    first.set_params(warm_start=True).fit(X)
    assert first.n_epochs_ == 4 and len(first.history_["loss"]) == 4
    assert not np.array_equal(first.transform(X), again.transform(X))


def test_resume_true_without_checkpoint_is_an_error(tmp_path, digits):
    X, _ = digits
    with pytest.raises(TrainingError, match="no checkpoint"):
        featurekit.create("simclr", max_epochs=1, checkpoint_dir=tmp_path, resume=True,
                          **TINY).fit(X[:64])


def test_eval_set_records_knn_accuracy_and_stops_early(digits):
    X, y = digits
    est = featurekit.create("simclr", max_epochs=6, eval_set=(X[1000:1300], y[1000:1300]),
                            n_iter_no_change=1, **TINY).fit(X[:1000])
    acc = est.history_["eval_knn_accuracy"]
    assert len(acc) == est.n_epochs_ <= 6
    assert all(0.5 < a <= 1 for a in acc), acc  # digits' kNN accuracy is far above chance
    if est.n_epochs_ < 6:
        assert acc[-1] <= max(acc[:-1])


def test_fit_restores_global_rng_state(digits):
    X, _ = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    featurekit.create("simclr", max_epochs=1, **TINY).fit(X[:64])
    assert torch.equal(torch.rand(3), expected)


def test_quiet_when_verbose_0_or_not_a_terminal(digits, capfd):
    X, _ = digits
    featurekit.create("simclr", max_epochs=1, **{**TINY, "verbose": 1}).fit(X[:64])
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("progress, expected", [(0.0, 0.01), (0.05, 0.505), (0.1, 1.0),
                                                (0.55, 0.5), (1.0, 0.0)])
def test_warmup_cosine_schedule(progress, expected):
    spec = OptimizerSpec([], warmup=0.1)
    assert schedule_factor(spec, progress) == pytest.approx(expected, abs=0.011)


def test_constant_then_linear_schedule():
    spec = OptimizerSpec([], schedule="constant_then_linear", decay=0.5)
    assert [schedule_factor(spec, p) for p in (0.0, 0.49, 0.75, 1.0)] == \
        pytest.approx([1.0, 1.0, 0.5, 0.0])


def test_lr_auto_scales_with_batch_size_where_the_paper_does():
    from featurekit.training import resolve_optimizer_specs

    specs = {"a": OptimizerSpec([], "sgd", lr=0.3, lr_batch_scaling=True),
             "b": OptimizerSpec([], "adam", lr=1e-3)}
    got = resolve_optimizer_specs(specs, optimizer="auto", lr="auto", weight_decay={"b": 0.1},
                                  batch_size=512, owner="X")
    assert got["a"]["lr"] == pytest.approx(0.6) and got["b"]["lr"] == 1e-3
    assert got["b"]["weight_decay"] == 0.1 and got["a"]["optimizer"] == "sgd"
