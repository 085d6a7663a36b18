"""MoCo v2, SimSiam and BYOL beyond the conformance kit: MNIST fits, the MoCo queue,
SimSiam's collapse monitor, BYOL's target network."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import featurekit
from featurekit.datasets import load_mnist
from featurekit.hookspecs import hookimpl
from featurekit.registry import register_plugin, unregister_plugin
from featurekit.testing import tiny_data
from featurekit_contrastive import BYOL, MoCoV2, SimCLR, SimSiam
from featurekit_contrastive.byol import target_momentum
from featurekit_contrastive.moco import KeyQueue, auto_queue_size

TINY = dict(backbone="mlp", backbone_kwargs={"hidden": (16,)}, batch_size=16, max_epochs=1,
            device="cpu", random_state=0, verbose=0)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()[0][:256]


@pytest.mark.parametrize("cls", [SimCLR, MoCoV2, SimSiam, BYOL])
def test_fit_transform_on_mnist(cls, mnist):
    est = cls(backbone_kwargs={"width": 8}, max_epochs=1, batch_size=64, device="cpu",
              random_state=0, verbose=0)
    Z = est.fit_transform(mnist)
    assert Z.dtype == np.float32 and Z.shape == (256, est.backbone_config_["feature_dim"])
    assert np.isfinite(Z).all()


@pytest.fixture(scope="module")
def mnist_as_folder_and_hdf5(mnist, tmp_path_factory):
    """The same 48 MNIST images as a folder of PNGs and as an HDF5 dataset."""
    h5py = pytest.importorskip("h5py")
    from PIL import Image

    folder = tmp_path_factory.mktemp("pngs")
    for i, img in enumerate(mnist[:48]):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    path = folder.parent / "images.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=mnist[:48], chunks=(8, 28, 28))
    return folder, path


@pytest.mark.parametrize("cls", [SimCLR, MoCoV2, SimSiam, BYOL])
def test_arrays_folders_and_hdf5_train_the_same_model(cls, mnist, mnist_as_folder_and_hdf5):
    import h5py

    folder, path = mnist_as_folder_and_hdf5
    params = dict(backbone_kwargs={"width": 4}, max_epochs=2, batch_size=16, device="cpu",
                  random_state=0, verbose=0)
    X = mnist[:48]
    expected = cls(**params).fit(X).transform(X)
    np.testing.assert_allclose(cls(**params).fit(folder).transform(folder), expected, atol=1e-5)
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(cls(**params).fit(f["x"]).transform(f["x"]), expected,
                                   atol=1e-5)


def test_list_methods_lists_the_family():
    names = {m["name"] for m in featurekit.list_methods() if m["family"] == "contrastive"}
    assert {"simclr", "moco_v2", "simsiam", "byol"} <= names


@pytest.mark.parametrize("cls", [MoCoV2, SimSiam, BYOL])
def test_blurred_views_of_tiny_images(cls):
    X, _ = tiny_data("image")  # 8x8 digits
    est = cls(blur=True, **{**TINY, "backbone": "small_cnn", "backbone_kwargs": {"width": 4}})
    assert np.isfinite(est.fit_transform(X)).all()


# -- family-specific bad input ----------------------------------------------------

@pytest.mark.parametrize("cls", [SimCLR, MoCoV2, SimSiam, BYOL])
def test_a_batch_of_one_is_refused(cls):
    X, _ = tiny_data("image")
    with pytest.raises(ValueError, match=r"'batch_size' parameter .* range \[2, inf\)"):
        cls(**{**TINY, "batch_size": 1}).fit(X)


def test_simclr_warns_when_the_batch_gives_few_negatives():
    X, _ = tiny_data("tabular")
    with pytest.warns(UserWarning, match="a batch of 4 gives each view only 6 of them"):
        SimCLR(**{**TINY, "batch_size": 4}).fit(X)
    # Too few samples shrink the batch just the same, and the warning says so.
    with pytest.warns(UserWarning, match="a batch of 5 .* at least 8 samples"):
        SimCLR(**TINY).fit(X[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SimCLR(**{**TINY, "batch_size": 8}).fit(X)


@pytest.mark.parametrize("cls", [SimCLR, MoCoV2, SimSiam, BYOL])
def test_images_too_small_for_views_are_upsampled_with_a_warning(cls):
    X = np.random.default_rng(0).integers(0, 256, (16, 2, 2), dtype=np.uint8)
    est = cls(**{**TINY, "backbone": "small_cnn", "backbone_kwargs": {"width": 4}})
    with pytest.warns(UserWarning, match="images of 2x2 px .* upsampled to 8 px"):
        Z = est.fit_transform(X)
    assert est.input_spec_.working_shape == (1, 8, 8)
    assert np.isfinite(Z).all()


# -- MoCo v2 -------------------------------------------------------------------

def test_key_queue_is_a_ring_buffer():
    queue = KeyQueue(5, 2)
    queue.push(torch.ones(3, 2))
    assert int(queue.ptr) == 3
    queue.push(2 * torch.ones(3, 2))
    assert int(queue.ptr) == 1
    assert queue.keys[:, 0].tolist() == [2, 1, 1, 2, 2]
    queue.push(torch.arange(14.0).view(7, 2))  # longer than the queue: the newest 5 survive
    assert int(queue.ptr) == 1 and sorted(queue.keys[:, 0].tolist()) == [4, 6, 8, 10, 12]


def test_queue_pointer_advances_by_the_batch_each_step(monkeypatch):
    seen = []
    push = KeyQueue.push

    def spy(self, k):
        before = int(self.ptr)
        push(self, k)
        seen.append((before, len(k), int(self.ptr)))

    monkeypatch.setattr(KeyQueue, "push", spy)
    X, _ = tiny_data("tabular")
    model = MoCoV2(queue_size=40, **TINY).fit(X)
    assert [(b, (b + 16) % 40) for b, _, _ in seen] == [(b, a) for b, _, a in seen]
    assert [n for _, n, _ in seen] == [16, 16, 16]
    assert int(model.modules_["queue"].ptr) == 48 % 40


def test_queue_survives_pickle():
    X, _ = tiny_data("tabular")
    model = MoCoV2(queue_size=40, **TINY).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = pickle.loads(pickle.dumps(model))
    assert int(again.modules_["queue"].ptr) == int(model.modules_["queue"].ptr) == 8
    assert torch.equal(again.modules_["queue"].keys, model.modules_["queue"].keys)


class _StopAfterFirstEpoch:
    @hookimpl
    def featurekit_on_epoch_end(self, estimator, epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt


def test_queue_survives_resume(tmp_path):
    X, _ = tiny_data("tabular")
    params = {**TINY, "max_epochs": 2, "queue_size": 40}
    reference = MoCoV2(**params).fit(X).modules_["queue"]
    register_plugin(_StopAfterFirstEpoch(), "test-contrastive-stop")
    try:
        with pytest.raises(KeyboardInterrupt):
            MoCoV2(checkpoint_dir=tmp_path, **params).fit(X)
    finally:
        unregister_plugin("test-contrastive-stop")
    resumed = MoCoV2(checkpoint_dir=tmp_path, **params).fit(X).modules_["queue"]
    assert int(resumed.ptr) == int(reference.ptr) == 96 % 40
    assert torch.equal(resumed.keys, reference.keys)


def test_auto_queue_size_rule():
    assert auto_queue_size(1000, 64) == 960
    assert auto_queue_size(50, 64) == 50  # the whole (single, smaller) batch
    assert auto_queue_size(10**6, 256) == 65536
    assert auto_queue_size(10**6, 1000) == 65000  # stays a multiple of the batch
    X, _ = tiny_data("tabular")
    model = MoCoV2(**{**TINY, "batch_size": 20}).fit(X)
    assert model.modules_["queue"].keys.shape == (40, 128)


def test_too_large_queue_warns_and_is_clipped():
    X, _ = tiny_data("tabular")
    with pytest.warns(UserWarning, match="queue_size=100 is larger than the 48"):
        model = MoCoV2(queue_size=100, **TINY).fit(X)
    assert len(model.modules_["queue"].keys) == 48


# -- SimSiam -------------------------------------------------------------------

def test_simsiam_logs_output_std():
    X, _ = tiny_data("tabular")
    model = SimSiam(**{**TINY, "max_epochs": 2}).fit(X)
    std = model.history_["output_std"]
    assert len(std) == 2 and all(0 < s <= 1 for s in std)


class _Constant(nn.Module):
    def forward(self, h):
        return torch.ones(len(h), 16, device=h.device)


class CollapsedSimSiam(SimSiam):
    """A projector that ignores its input: the textbook collapse."""

    def build(self, spec):
        modules = super().build(spec)
        modules["projector"] = _Constant()
        return modules


def test_simsiam_warns_on_collapse():
    X, _ = tiny_data("tabular")
    with pytest.warns(UserWarning, match="collapsed"):
        model = CollapsedSimSiam(projection_dim=16, **TINY).fit(X)
    assert model.history_["output_std"][-1] == 0


# -- BYOL ----------------------------------------------------------------------

def test_byol_target_starts_as_the_online_network_then_lags():
    X, _ = tiny_data("tabular")
    pairs = (("backbone", "target_backbone"), ("projector", "target_projector"))

    def same(model):
        m = model.modules_
        return all(torch.equal(a, b) for o, t in pairs
                   for a, b in zip(m[o].parameters(), m[t].parameters()))

    assert same(BYOL(**{**TINY, "max_epochs": 0}).fit(X))
    assert not same(BYOL(**TINY).fit(X))


def test_byol_tau_schedule():
    assert target_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert target_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert target_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert target_momentum(0.996, 0.0) == pytest.approx(0.996)
    assert math.isclose(target_momentum(0.5, 0.25), 1 - 0.5 * (math.cos(math.pi / 4) + 1) / 2)
