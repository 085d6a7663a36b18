"""VGG and AlexNet feature extractors built from torchvision's models.

Both return the torchvision object with ``classifier`` replaced by
``nn.Identity()`` and ``avgpool`` by a global average pool, so the features
are the pooled last convolution maps (512-d for VGG, 256-d for AlexNet) and
the ``state_dict`` keys stay those of torchvision.

References
----------
.. [1] Simonyan, Zisserman. "Very Deep Convolutional Networks for Large-Scale
   Image Recognition". ICLR 2015.
.. [2] Krizhevsky, Sutskever, Hinton. "ImageNet Classification with Deep
   Convolutional Neural Networks". NeurIPS 2012.
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import nn
from torchvision.models import VGG, AlexNet, WeightsEnum

from featurekit.backbones._common import (
    check_input_size,
    check_int,
    check_pretrained_setup,
    kaiming_init,
    new_conv,
    strict_kwargs,
)

VGG_ARCHS = ("vgg11_bn", "vgg16_bn")

# Five 2x2 max pools halve the image down to 1x1; a smaller side leaves an
# empty map. VGG has no stem to shrink, so this holds with or without weights.
VGG_MIN_INPUT_SIZE = 32

# With the small stem only the two remaining 3x3/2 max pools shrink the image
# (7 -> 3 -> 1); the original 11x11/4 stem with three pools needs 63 px.
ALEXNET_MIN_INPUT_SIZE = 7
_ALEXNET_MIN_INPUT_SIZE_LARGE_STEM = 63


@strict_kwargs
def vgg(arch: str, *, in_channels: int = 3, input_size: int = 224, small_stem: bool = False,
        weights: str | None = None) -> VGG:
    """Build a torchvision VGG (with batch norm) that returns pooled features.

    Parameters
    ----------
    arch : {"vgg11_bn", "vgg16_bn"}
        The torchvision architecture (bound by the registry).
    in_channels : int, default=3
        Channels of the input images; another value than 3 replaces the first
        convolution.
    input_size : int, default=224
        Side of the square input images, at least 32.
    small_stem : bool, default=False
        Accepted for the common factory contract; VGG's 3x3 stem already
        suits small images, so it changes nothing.
    weights : str or None, default=None
        A torchvision weight name of ``arch``, downloaded by torchvision.
        Requires ``in_channels=3``.

    Returns
    -------
    torchvision.models.VGG
        ``forward`` maps ``(n, in_channels, h, w)`` to ``(n, 512)``.
    """
    in_channels = check_int(in_channels, "in_channels", arch)
    input_size = check_int(input_size, "input_size", arch)
    check_input_size(arch, input_size, VGG_MIN_INPUT_SIZE, "(five 2x2 max pools)")
    # small_stem leaves VGG unchanged, so it cannot conflict with weights.
    resolved = check_pretrained_setup(arch, weights, in_channels=in_channels, small_stem=False)
    model = _build(arch, resolved, init=_vgg_init)
    if in_channels != 3:
        model.features[0] = kaiming_init(new_conv(model.features[0], in_channels=in_channels))
    return _pooled_features(model)


@strict_kwargs
def alexnet(arch: str, *, in_channels: int = 3, input_size: int = 224,
            small_stem: bool = False, weights: str | None = None) -> AlexNet:
    """Build torchvision's AlexNet returning its 256-d globally pooled features.

    Parameters
    ----------
    arch : {"alexnet"}
        The torchvision architecture (bound by the registry).
    in_channels : int, default=3
        Channels of the input images; another value than 3 replaces the first
        convolution.
    input_size : int, default=224
        Side of the square input images: at least 7 with the small stem, 63
        without.
    small_stem : bool, default=False
        Replace the 11x11 stride-4 stem by a 3x3 stride-1 convolution (64
        channels) and drop the first max pool, so 32 px images keep a usable
        feature map.
    weights : str or None, default=None
        A torchvision weight name of AlexNet, downloaded by torchvision.
        Requires ``in_channels=3`` and ``small_stem=False``.

    Returns
    -------
    torchvision.models.AlexNet
        ``forward`` maps ``(n, in_channels, h, w)`` to ``(n, 256)``.
    """
    in_channels = check_int(in_channels, "in_channels", arch)
    input_size = check_int(input_size, "input_size", arch)
    if small_stem:
        check_input_size(arch, input_size, ALEXNET_MIN_INPUT_SIZE,
                         "with the small stem (two 3x3 stride-2 max pools)")
    else:
        check_input_size(arch, input_size, _ALEXNET_MIN_INPUT_SIZE_LARGE_STEM,
                         "without the small stem; pass small_stem=True for small images")
    resolved = check_pretrained_setup(arch, weights, in_channels=in_channels,
                                      small_stem=small_stem)
    model = _build(arch, resolved, init=_reset_parameters)
    if small_stem:
        model.features[0] = new_conv(model.features[0], in_channels=in_channels,
                                     kernel_size=3, stride=1, padding=1)
        # Identity rather than deletion keeps the Sequential's indices, hence
        # the torchvision state_dict keys of every later layer.
        model.features[2] = nn.Identity()
    elif in_channels != 3:
        model.features[0] = new_conv(model.features[0], in_channels=in_channels)
    return _pooled_features(model)


def _build(arch: str, weights: WeightsEnum | None,
           init: Callable[[nn.Module], None]) -> nn.Module:
    """torchvision's ``arch``, without allocating its classifier when untrained.

    The classifier holds most of the parameters (102 M of VGG-16's 138 M) and
    is dropped anyway; allocating and initialising it takes seconds on a CPU.
    So the untrained model is built on the meta device, headless, and only
    then materialised and initialised as torchvision would (``init``).
    """
    if weights is not None:
        return torchvision.models.get_model(arch, weights=weights)
    with torch.device("meta"):
        model = torchvision.models.get_model(arch)
    model.classifier = nn.Identity()
    model.to_empty(device="cpu")
    model.apply(init)
    return model


def _vgg_init(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        kaiming_init(module)
    elif isinstance(module, nn.BatchNorm2d):
        module.reset_parameters()


def _reset_parameters(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
        module.reset_parameters()


def _pooled_features(model: nn.Module) -> nn.Module:
    last_conv = [m for m in model.features if isinstance(m, nn.Conv2d)][-1]
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Identity()
    model.out_features = last_conv.out_channels
    return model
