"""featurekit's built-in backbones, registered through the plugin hook.

This module is the ``backbones`` entry point of the ``featurekit.plugins``
group, so the built-in backbones come in exactly as a third-party plugin's do.

Image factories are called as ``factory(in_channels=..., input_size=...,
small_stem=..., weights=..., **backbone_kwargs)``, tabular ones as
``factory(n_features=..., **backbone_kwargs)``. Each returns an ``nn.Module``
mapping a normalized float batch to ``(n, out_features)`` features, with an
``out_features`` attribute, and an ``input_size`` attribute when it accepts
only that square side (ViT).

Examples
--------
>>> from featurekit.registry import Registry, make_plugin_manager
>>> import featurekit.backbones
>>> registry = Registry(make_plugin_manager())
>>> featurekit.backbones.featurekit_register_backbones(registry)
>>> model = registry.backbone("small_cnn").factory(
...     in_channels=1, input_size=8, small_stem=True, weights=None)
>>> model.out_features
256
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from featurekit.backbones import resnet, small, vgg, vit
from featurekit.backbones._common import pretrained_names, resolve_weights
from featurekit.exceptions import ParameterError
from featurekit.hookspecs import hookimpl

#: The featurekit plugin API this plugin is written for (see docs/plugins.md).
FEATUREKIT_API_VERSION = 1

if TYPE_CHECKING:  # pragma: no cover
    from typing import Callable

    from torch import nn

    from featurekit.registry import Registry

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_DESCRIPTIONS = {
    "resnet18": "ResNet-18 (He et al., 2016); 512-d pooled features.",
    "resnet34": "ResNet-34 (He et al., 2016); 512-d pooled features.",
    "resnet50": "ResNet-50 (He et al., 2016); 2048-d pooled features.",
    "vgg11_bn": "VGG-11 with batch norm (Simonyan & Zisserman, 2015); 512-d pooled features.",
    "vgg16_bn": "VGG-16 with batch norm (Simonyan & Zisserman, 2015); 512-d pooled features.",
    "alexnet": "AlexNet (Krizhevsky et al., 2012); 256-d pooled features.",
    "vit_tiny": "ViT-Tiny (Touvron et al., 2021), patch 2/4/16 by image size; 192-d.",
    "vit_small": "ViT-Small (Touvron et al., 2021), patch 2/4/16 by image size; 384-d.",
    "small_cnn": "Four conv-BN-ReLU blocks, ~0.39 M parameters, for 8-64 px images; 256-d.",
    "mlp": "Linear-BatchNorm-ReLU layers for tabular data; hidden[-1]-d (256).",
}


@hookimpl
def featurekit_register_backbones(registry: Registry) -> None:
    """Register resnet18/34/50, vgg11_bn, vgg16_bn, alexnet, vit_tiny/small, small_cnn, mlp."""
    for arch in resnet.ARCHS:
        _add_torchvision(registry, arch, resnet.resnet, resnet.MIN_INPUT_SIZE)
    for arch in vgg.VGG_ARCHS:
        _add_torchvision(registry, arch, vgg.vgg, vgg.VGG_MIN_INPUT_SIZE)
    _add_torchvision(registry, "alexnet", vgg.alexnet, vgg.ALEXNET_MIN_INPUT_SIZE)
    for arch in vit.SIZES:
        registry.add_backbone(arch, functools.partial(vit.vit, arch), modality="image",
                              min_input_size=vit.MIN_INPUT_SIZE, pretrained=(),
                              description=_DESCRIPTIONS[arch])
    registry.add_backbone("small_cnn", small.small_cnn, modality="image",
                          min_input_size=small.SMALL_CNN_MIN_INPUT_SIZE, pretrained=(),
                          description=_DESCRIPTIONS["small_cnn"])
    registry.add_backbone("mlp", small.mlp, modality="tabular", min_input_size=0,
                          pretrained=(), description=_DESCRIPTIONS["mlp"])


def _add_torchvision(registry: Registry, arch: str, factory: Callable[..., nn.Module],
                     min_input_size: int) -> None:
    registry.add_backbone(arch, functools.partial(factory, arch), modality="image",
                          min_input_size=min_input_size, pretrained=pretrained_names(arch),
                          description=_DESCRIPTIONS[arch])


def weights_preprocessing(arch: str, weights: str) -> tuple[int, tuple[float, ...],
                                                             tuple[float, ...]]:
    """The input a torchvision weight set was trained on: crop size, mean and std.

    Read from the weights' metadata, so nothing is downloaded.

    Parameters
    ----------
    arch : str
        A torchvision architecture, such as ``"resnet50"``.
    weights : str
        One of its weight names, such as ``"IMAGENET1K_V2"`` or ``"DEFAULT"``.

    Returns
    -------
    crop_size : int
        Side of the square images the weights expect.
    mean, std : tuple of float
        Per-channel normalization constants.

    Examples
    --------
    >>> weights_preprocessing("resnet18", "IMAGENET1K_V1")
    (224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    """
    if weights is None:
        raise ParameterError(f"weights_preprocessing needs a weight name of {arch!r}; got None.")
    transforms = resolve_weights(arch, weights).transforms()
    return (int(transforms.crop_size[0]), tuple(float(m) for m in transforms.mean),
            tuple(float(s) for s in transforms.std))
