"""Discriminators: CycleGAN's PatchGAN (Isola et al. 2017) and BiGAN's joint D(x, z)
(Donahue et al. 2017; Dumoulin et al. 2017), with optional spectral norm (Miyato et al. 2018)."""

from __future__ import annotations

import math

import torch
from torch import nn

#: Dropout after every hidden layer of BiGAN's D, as ALI's discriminators (Dumoulin et al.).
JOINT_DROPOUT = 0.2
#: PatchGAN's stride-2 layers: the paper's 3 (a 70 x 70 receptive field) from 64 px up;
#: fewer for small images, so the receptive field stays about the image's size.
MAX_PATCH_LAYERS = 3


def patch_layers(size: int) -> int:
    """Stride-2 layers of a PatchGAN for images of side ``size``: ``log2(size) - 3``,
    between 1 and 3 (receptive fields of 16, 34 and 70 px).

    Examples
    --------
    >>> [patch_layers(s) for s in (8, 16, 32, 64, 256)]
    [1, 1, 2, 3, 3]
    """
    return max(1, min(MAX_PATCH_LAYERS, int(math.log2(max(size, 1))) - 3))


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``C64-C128-C256-C512`` 4x4 convolutions, a realness score per patch.

    The first layer has no norm; the others use instance norm; all use
    LeakyReLU(0.2). The last stride-2 layer is followed by a stride-1 one and
    a stride-1 convolution to one channel, as in the paper's 70 x 70 PatchGAN.

    Parameters
    ----------
    in_channels : int
        Channels of the images.
    image_size : int
        The longer side of the images; it sets the number of layers
        (:func:`patch_layers`).
    width : int
        Channels of the first layer (the paper's 64), doubled per layer up to 8x.

    Examples
    --------
    >>> import torch
    >>> PatchDiscriminator(1, 16, 8)(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 1, 6, 6])
    """

    def __init__(self, in_channels: int, image_size: int, width: int):
        super().__init__()
        n_layers = patch_layers(image_size)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for i in range(1, n_layers + 1):
            nxt = width * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(channels, nxt, 4, stride=stride, padding=1),
                       nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2, inplace=True)]
            channels = nxt
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class JointDiscriminator(nn.Module):
    """BiGAN's D(x, z): an image path and a latent path, joined, to one logit.

    The image path is a DCGAN-style stack of 4x4 stride-2 convolutions with
    LeakyReLU(0.2) (no batch norm, so spectral norm bounds it) down to a map
    of at most 4 px; the latent path two LeakyReLU linear layers; the joint
    path one hidden layer. Every hidden layer is followed by dropout
    (``JOINT_DROPOUT``, 0.2 as in ALI), which keeps D from winning outright.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` of the images.
    n_components : int
        Size of z.
    width : int
        Channels of the first convolution, doubled per layer (at most 8x).
    hidden : int, default=512
        Width of the latent and joint layers.

    Examples
    --------
    >>> import torch
    >>> JointDiscriminator((1, 28, 28), 8, 8)(torch.zeros(2, 1, 28, 28), torch.zeros(2, 8)).shape
    torch.Size([2])
    """

    def __init__(self, input_shape: tuple[int, int, int], n_components: int, width: int,
                 hidden: int = 512):
        super().__init__()
        channels, height, width_px = input_shape
        layers: list[nn.Module] = []
        side, c_in, i = max(height, width_px), channels, 0
        while side > 4 or i == 0:
            c_out = width * min(2 ** i, 8)
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), *_act()]
            side, c_in, i = side // 2, c_out, i + 1
        layers.append(nn.Flatten())
        self.x_path = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.x_path(torch.zeros(1, channels, height, width_px)).shape[1]
        self.x_path.extend([nn.Linear(flat, hidden), *_act()])
        self.z_path = nn.Sequential(nn.Linear(n_components, hidden), *_act(),
                                    nn.Linear(hidden, hidden), *_act())
        self.joint = nn.Sequential(nn.Linear(2 * hidden, hidden), *_act(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([self.x_path(x), self.z_path(z.to(x.dtype))], dim=1)
        return self.joint(joint).squeeze(1)


def _act() -> list[nn.Module]:
    return [nn.LeakyReLU(0.2, inplace=True), nn.Dropout(JOINT_DROPOUT)]


def with_spectral_norm(module: nn.Module) -> nn.Module:
    """``module`` with spectral norm on the weight of every convolution and linear layer.

    Examples
    --------
    >>> sum(hasattr(m, "parametrizations") for m in
    ...     with_spectral_norm(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))))
    2
    """
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(layer)
    return module
