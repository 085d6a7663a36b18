"""ResNet feature extractors (He et al., 2016) built from torchvision's models.

The torchvision object itself is returned with ``fc`` replaced by
``nn.Identity()``, so its ``state_dict`` keys stay those of torchvision and
checkpoints move between the two with ``strict=False``.

References
----------
.. [1] He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition".
   CVPR 2016.
"""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models import ResNet

from featurekit.backbones._common import (
    check_int,
    check_pretrained_setup,
    kaiming_init,
    new_conv,
    strict_kwargs,
)

ARCHS = ("resnet18", "resnet34", "resnet50")

# With the small stem the network downsamples 8 times in all, so 8 px is the
# smallest side whose last stage still sees a map computed from real pixels.
MIN_INPUT_SIZE = 8


@strict_kwargs
def resnet(arch: str, *, in_channels: int = 3, input_size: int = 224, small_stem: bool = False,
           weights: str | None = None) -> ResNet:
    """Build a torchvision ResNet that returns its globally pooled features.

    Parameters
    ----------
    arch : {"resnet18", "resnet34", "resnet50"}
        The torchvision architecture (bound by the registry).
    in_channels : int, default=3
        Channels of the input images; another value than 3 replaces ``conv1``.
    input_size : int, default=224
        Side of the square input images. Any side works; kept for the common
        factory contract.
    small_stem : bool, default=False
        Use the CIFAR stem: ``conv1`` becomes 3x3 with stride 1 and the max
        pool is dropped, which keeps small images from shrinking to nothing.
    weights : str or None, default=None
        A torchvision weight name of ``arch`` (``"IMAGENET1K_V1"``,
        ``"DEFAULT"``, ...), downloaded by torchvision. Requires
        ``in_channels=3`` and ``small_stem=False``.

    Returns
    -------
    torchvision.models.ResNet
        ``forward`` maps ``(n, in_channels, h, w)`` to ``(n, out_features)``;
        ``out_features`` is 512 for resnet18/34 and 2048 for resnet50.
    """
    in_channels = check_int(in_channels, "in_channels", arch)
    check_int(input_size, "input_size", arch)
    resolved = check_pretrained_setup(arch, weights, in_channels=in_channels,
                                      small_stem=small_stem)
    model = torchvision.models.get_model(arch, weights=resolved)
    if small_stem:
        model.conv1 = kaiming_init(new_conv(model.conv1, in_channels=in_channels,
                                            kernel_size=3, stride=1, padding=1))
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = kaiming_init(new_conv(model.conv1, in_channels=in_channels))
    model.out_features = model.fc.in_features
    model.fc = nn.Identity()
    return model
