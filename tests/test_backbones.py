"""Tests of the built-in backbones: every registered name is built and run."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import featurekit.backbones as backbones
from featurekit.backbones import vit
from featurekit.exceptions import ParameterError
from featurekit.registry import BackboneInfo, Registry, make_plugin_manager

EXPECTED = {"resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "alexnet",
            "vit_tiny", "vit_small", "small_cnn", "mlp"}


def _make_registry() -> Registry:
    # Through pluggy, as discovery calls it, so the hookimpl marker is tested too.
    pm = make_plugin_manager()
    pm.register(backbones)
    registry = Registry(pm)
    pm.hook.featurekit_register_backbones(registry=registry)
    return registry


REGISTRY = _make_registry()
NAMES = sorted(REGISTRY.backbones)
IMAGE_NAMES = [n for n in NAMES if REGISTRY.backbones[n].modality == "image"]


def _build(info: BackboneInfo, *, in_channels: int = 3, input_size: int = 32,
           small_stem: bool = True, **kwargs) -> nn.Module:
    return info.factory(in_channels=in_channels, input_size=input_size,
                        small_stem=small_stem, weights=None, **kwargs)


def _run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = module(x)
    assert isinstance(module.out_features, int)
    assert out.shape == (x.shape[0], module.out_features)
    assert torch.isfinite(out).all()
    return out


def _image_batch(module: nn.Module, in_channels: int, side: int, n: int = 2) -> torch.Tensor:
    side = getattr(module, "input_size", side)  # the core resizes to it
    return torch.randn(n, in_channels, side, side)


def test_registers_the_builtin_backbones():
    assert set(NAMES) == EXPECTED
    assert REGISTRY.backbones["mlp"].modality == "tabular"
    assert REGISTRY.backbones["mlp"].min_input_size == 0
    assert REGISTRY.backbones["resnet50"].pretrained == ("IMAGENET1K_V1", "IMAGENET1K_V2")
    assert all(REGISTRY.backbones[n].description for n in NAMES)


# Colour images here and grey ones at the smallest size below cover both
# stems while building each (possibly large) network only twice.
@pytest.mark.parametrize("name", NAMES)
def test_forward_gives_features(name):
    info = REGISTRY.backbones[name]
    if info.modality == "tabular":
        _run(info.factory(n_features=5).train(), torch.randn(4, 5))
        return
    side = max(info.min_input_size, 16)
    module = _build(info, in_channels=3, input_size=side)
    _run(module, _image_batch(module, 3, side))


@pytest.mark.parametrize("name", NAMES)
def test_min_input_size_forward(name):
    info = REGISTRY.backbones[name]
    if info.modality == "tabular":
        assert info.min_input_size == 0
        _run(info.factory(n_features=1).eval(), torch.randn(2, 1))
        return
    side = info.min_input_size
    module = _build(info, in_channels=1, input_size=side).eval()
    assert getattr(module, "input_size", side) == side
    _run(module, _image_batch(module, 1, side))


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_names_come_from_torchvision(name):
    info = REGISTRY.backbones[name]
    if name.startswith(("resnet", "vgg", "alexnet")):
        enum = torchvision.models.get_model_weights(name)
        assert info.pretrained == tuple(w.name for w in enum)
        assert "IMAGENET1K_V1" in info.pretrained
    else:
        assert info.pretrained == ()


@pytest.mark.parametrize(("arch", "head"), [("resnet18", "fc."), ("vgg11_bn", "classifier."),
                                            ("alexnet", "classifier.")])
def test_state_dict_is_torchvision_compatible(arch, head):
    info = REGISTRY.backbones[arch]
    reference = torchvision.models.get_model(arch)
    ours = _build(info, input_size=224, small_stem=False)

    loaded = ours.load_state_dict(reference.state_dict(), strict=False)
    assert loaded.missing_keys == []
    assert loaded.unexpected_keys and all(k.startswith(head) for k in loaded.unexpected_keys)
    _assert_same_values(ours.state_dict(), reference.state_dict())

    # A freshly built backbone (vgg and alexnet come from the meta device)
    # must be fully initialised before it is exported.
    fresh = _build(info, input_size=224, small_stem=False).state_dict()
    for key, value in fresh.items():
        assert torch.isfinite(value.float()).all(), key
        if key.endswith("running_var"):
            assert torch.equal(value, torch.ones_like(value)), key
        if key.endswith(("running_mean", "num_batches_tracked")):
            assert not value.any(), key
    loaded = reference.load_state_dict(fresh, strict=False)
    assert loaded.unexpected_keys == []
    assert loaded.missing_keys and all(k.startswith(head) for k in loaded.missing_keys)
    _assert_same_values(fresh, reference.state_dict())


def _assert_same_values(ours: dict, reference: dict) -> None:
    for key, value in ours.items():
        assert torch.equal(value, reference[key]), key


@pytest.mark.parametrize(("arch", "side"), [("resnet18", 32), ("alexnet", 63), ("vgg11_bn", 32)])
def test_original_stem_runs_at_its_smallest_size(arch, side):
    module = _build(REGISTRY.backbones[arch], input_size=side, small_stem=False).eval()
    _run(module, torch.randn(1, 3, side, side))


def test_small_stem_replaces_the_first_layers():
    resnet = _build(REGISTRY.backbones["resnet18"], in_channels=1, small_stem=True)
    assert (resnet.conv1.in_channels, resnet.conv1.kernel_size, resnet.conv1.stride) == (
        1, (3, 3), (1, 1))
    assert isinstance(resnet.maxpool, nn.Identity)
    alexnet = _build(REGISTRY.backbones["alexnet"], in_channels=1, small_stem=True)
    assert (alexnet.features[0].kernel_size, alexnet.features[0].out_channels) == ((3, 3), 64)
    assert isinstance(alexnet.features[2], nn.Identity)
    gray = _build(REGISTRY.backbones["resnet18"], in_channels=1, small_stem=False)
    assert (gray.conv1.in_channels, gray.conv1.kernel_size) == (1, (7, 7))


def test_small_cnn_size():
    info = REGISTRY.backbones["small_cnn"]
    module = _build(info, in_channels=3)
    n_params = sum(p.numel() for p in module.parameters())
    assert 100_000 <= n_params <= 1_000_000
    assert module.out_features == 256
    wide = _build(info, in_channels=1, input_size=8, width=8)
    assert wide.out_features == 64
    _run(wide, torch.randn(3, 1, 8, 8))


def test_mlp_hidden():
    module = REGISTRY.backbones["mlp"].factory(n_features=7, hidden=[16, 8, 4])
    assert module.out_features == 4
    _run(module, torch.randn(5, 7))


@pytest.mark.parametrize(("input_size", "small_stem", "patch", "side"), [
    (8, True, 2, 8), (15, True, 2, 16), (16, True, 2, 16), (17, True, 4, 20),
    (30, True, 4, 32), (64, True, 4, 64), (100, False, 16, 112), (224, False, 16, 224),
])
def test_vit_rounds_input_size_to_patches(input_size, small_stem, patch, side):
    assert vit.default_patch_size(input_size, small_stem) == patch
    module = _build(REGISTRY.backbones["vit_tiny"], input_size=input_size,
                    small_stem=small_stem)
    assert module.patch_size == patch
    assert module.input_size == side


def test_vit_patch_size_override_and_channels():
    module = _build(REGISTRY.backbones["vit_small"], in_channels=2, input_size=10,
                    patch_size=5)
    assert (module.input_size, module.conv_proj.in_channels) == (10, 2)
    assert module.conv_proj.kernel_size == (5, 5)
    assert module.out_features == 384
    _run(module, torch.randn(2, 2, 10, 10))


def test_unknown_weights_lists_the_valid_names():
    with pytest.raises(ParameterError, match="'weights'") as info:
        REGISTRY.backbones["resnet50"].factory(in_channels=3, input_size=224,
                                               small_stem=False, weights="IMAGENET")
    for name in ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT"):
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "alexnet"])
def test_weights_need_rgb(name):
    with pytest.raises(ParameterError, match="'in_channels'.*must be 3"):
        REGISTRY.backbones[name].factory(in_channels=1, input_size=224, small_stem=False,
                                         weights="IMAGENET1K_V1")


@pytest.mark.parametrize("name", ["resnet34", "alexnet"])
def test_weights_keep_the_original_stem(name):
    with pytest.raises(ParameterError, match="'small_stem'"):
        REGISTRY.backbones[name].factory(in_channels=3, input_size=224, small_stem=True,
                                         weights="DEFAULT")


@pytest.mark.parametrize("name", ["vit_tiny", "vit_small", "small_cnn"])
def test_no_pretrained_weights(name):
    with pytest.raises(ParameterError, match="no pretrained weights"):
        REGISTRY.backbones[name].factory(in_channels=3, input_size=32, small_stem=True,
                                         weights="IMAGENET1K_V1")


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("resnet18", {"in_channels": 0}, "'in_channels'"),
    ("resnet18", {"input_size": 2.5}, "'input_size'"),
    ("resnet18", {"widht": 3}, "unexpected parameter.*'widht'"),
    ("vgg16_bn", {"input_size": 31}, "'input_size'.*at least 32"),
    ("alexnet", {"input_size": 6}, "'input_size'.*at least 7"),
    ("alexnet", {"input_size": 62, "small_stem": False}, "small_stem=True"),
    ("vit_tiny", {"patch_size": 0}, "'patch_size'"),
    ("small_cnn", {"width": 0}, "'width'"),
    ("small_cnn", {"width": True}, "'width'"),
])
def test_bad_image_parameters(name, kwargs, match):
    params = {"in_channels": 3, "input_size": 32, "small_stem": True, "weights": None, **kwargs}
    with pytest.raises(ParameterError, match=match):
        REGISTRY.backbones[name].factory(**params)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_features": 0}, "'n_features'"),
    ({"n_features": 3, "hidden": ()}, "'hidden'"),
    ({"n_features": 3, "hidden": (8, 0)}, "'hidden'"),
    ({"n_features": 3, "hidden": 8}, "'hidden'"),
    ({"n_features": 3, "depth": 2}, "'depth'"),
])
def test_bad_mlp_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        REGISTRY.backbones["mlp"].factory(**kwargs)


def test_parameter_errors_are_value_errors():
    with pytest.raises(ValueError):
        REGISTRY.backbones["small_cnn"].factory(in_channels=-1)


def test_weights_preprocessing():
    assert backbones.weights_preprocessing("resnet50", "IMAGENET1K_V2") == (
        224, backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)
    crop, mean, std = backbones.weights_preprocessing("vgg16_bn", "DEFAULT")
    assert (crop, len(mean), len(std)) == (224, 3, 3)
    with pytest.raises(ParameterError, match="'weights'"):
        backbones.weights_preprocessing("alexnet", "nope")
    with pytest.raises(ParameterError, match="not a torchvision architecture"):
        backbones.weights_preprocessing("small_cnn", "DEFAULT")


def test_vit_size_overrides():
    module = _build(REGISTRY.backbones["vit_tiny"], in_channels=1, input_size=8, num_layers=2,
                    num_heads=2, hidden_dim=16, mlp_dim=32)
    assert (len(module.encoder.layers), module.hidden_dim, module.out_features) == (2, 16, 16)
    _run(module, torch.randn(2, 1, 8, 8))
    with pytest.raises(ParameterError, match="'hidden_dim'.*multiple of num_heads=4"):
        _build(REGISTRY.backbones["vit_tiny"], hidden_dim=30, num_heads=4)
    with pytest.raises(ParameterError, match="'num_layers'"):
        _build(REGISTRY.backbones["vit_tiny"], num_layers=0)
