"""Generators: CycleGAN's ResNet-block generator (Johnson et al. 2016; Zhu et al. 2017)
and BiGAN's latent-to-image generator (DCGAN-style, Radford et al. 2016).

CycleGAN's generator is an encoder (the method's backbone) followed by an
:class:`ImageDecoder`. The encoder registered here as the ``cyclegan_encoder``
backbone is the paper's: ``c7s1-k, d2k, d4k`` and ``n_blocks`` residual
blocks ``R4k``, with instance norm. As a backbone it returns its last
feature map globally average-pooled (``4k`` features); the generator uses
the map itself (:func:`feature_map`).

All generators end in ``tanh``: images in [-1, 1], as in both papers.
"""

from __future__ import annotations

import math
from numbers import Integral

import torch
from torch import nn

from featurekit.exceptions import ParameterError
from featurekit.preprocess import Normalize

#: Images at least this large get 9 residual blocks, smaller ones 6 (the paper's rule:
#: 9 blocks for 256 x 256 training images, 6 for 128 x 128).
NINE_BLOCKS_FROM = 256
#: The decoder's channels never drop below this.
MIN_WIDTH = 8


class ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with instance norm, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGeneratorEncoder(nn.Module):
    """The encoder half of CycleGAN's generator: ``c7s1-k, d2k, d4k, R4k x n_blocks``.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    width : int
        ``k``, the channels of the first layer (the paper's 64).
    n_blocks : int
        Residual blocks.

    Attributes
    ----------
    features : nn.Sequential
        The layers up to the last feature map (``4k`` channels, a quarter of
        the input's side).
    out_features : int
        ``4 * width``: the size of the pooled features ``forward`` returns.
    """

    def __init__(self, in_channels: int, width: int, n_blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7),
                                   nn.InstanceNorm2d(width), nn.ReLU(inplace=True)]
        channels = width
        for _ in range(2):
            layers += [nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(2 * channels), nn.ReLU(inplace=True)]
            channels *= 2
        layers += [ResidualBlock(channels) for _ in range(n_blocks)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def cyclegan_encoder(*, in_channels: int = 3, input_size: int = 256, small_stem: bool = False,
                     weights: str | None = None, width: int = 64,
                     n_blocks: int | str = "auto") -> ResNetGeneratorEncoder:
    """Build CycleGAN's generator encoder as a backbone (see :class:`ResNetGeneratorEncoder`).

    Parameters
    ----------
    in_channels : int, default=3
        Channels of the input images.
    input_size : int, default=256
        Side of the input images; it sets ``n_blocks="auto"``.
    small_stem : bool, default=False
        Accepted for the common factory contract; unused.
    weights : None, default=None
        Accepted for the common factory contract; there are no pretrained weights.
    width : int, default=64
        Channels of the first layer (the paper's 64); the features have ``4 * width``.
    n_blocks : int or "auto", default="auto"
        Residual blocks; ``"auto"`` gives the paper's 9 for images of 256 px
        and more, and 6 below.

    Returns
    -------
    ResNetGeneratorEncoder

    Examples
    --------
    >>> import torch
    >>> enc = cyclegan_encoder(in_channels=1, input_size=16, width=4, n_blocks=1)
    >>> enc(torch.zeros(2, 1, 16, 16)).shape, enc.features(torch.zeros(2, 1, 16, 16)).shape
    (torch.Size([2, 16]), torch.Size([2, 16, 4, 4]))
    """
    if weights is not None:
        raise ParameterError(f"backbone 'cyclegan_encoder' has no pretrained weights; got "
                             f"weights={weights!r}. Pass weights=None")
    for name, value in (("in_channels", in_channels), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ParameterError(f"The {name!r} parameter of backbone 'cyclegan_encoder' must "
                                 f"be an int in [1, inf). Got {value!r} instead.")
    if n_blocks == "auto":
        n_blocks = 9 if input_size >= NINE_BLOCKS_FROM else 6
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, Integral) or n_blocks < 0:
        raise ParameterError("The 'n_blocks' parameter of backbone 'cyclegan_encoder' must be "
                             f"'auto' or an int in [0, inf). Got {n_blocks!r} instead.")
    return ResNetGeneratorEncoder(int(in_channels), int(width), int(n_blocks))


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map of ``backbone`` (before its global pooling).

    A backbone gives its map through a ``feature_map(x)`` method, or a
    ``features`` submodule holding its layers up to the map, as
    ``cyclegan_encoder``, ``small_cnn`` and torchvision's VGG and AlexNet do.
    """
    if callable(getattr(backbone, "feature_map", None)):
        return backbone.feature_map(x)
    return backbone.features(x)


def has_feature_map(backbone: nn.Module) -> bool:
    """Whether :func:`feature_map` can use ``backbone``."""
    return (callable(getattr(backbone, "feature_map", None))
            or isinstance(getattr(backbone, "features", None), nn.Module))


def halving_sizes(height: int, width: int, until: tuple[int, int]) -> list[tuple[int, int]]:
    """Sizes from ``until`` up to ``(height, width)``, each side doubling (a stride-2
    encoder's maps in reverse), without ``until`` itself.

    Examples
    --------
    >>> halving_sizes(28, 28, (7, 7))
    [(14, 14), (28, 28)]
    >>> halving_sizes(16, 16, (1, 1))
    [(2, 2), (4, 4), (8, 8), (16, 16)]
    """
    sizes = [(height, width)]
    while sizes[-1][0] > until[0] or sizes[-1][1] > until[1]:
        h, w = sizes[-1]
        half = (max(until[0], math.ceil(h / 2)), max(until[1], math.ceil(w / 2)))
        if half == sizes[-1]:
            break
        sizes.append(half)
    return [s for s in sizes[::-1] if s != tuple(until)]


class ImageDecoder(nn.Module):
    """A feature map -> an image in [-1, 1]: CycleGAN's ``u2k, uk, c7s1-C`` decoder.

    Each stage doubles the map's sides (nearest-neighbour upsampling to the
    exact size, then a 3x3 convolution, instance norm and ReLU) and halves
    its channels; a reflection-padded 7x7 convolution and ``tanh`` give the
    image.

    Parameters
    ----------
    in_channels : int
        Channels of the feature map.
    map_size : tuple of int
        ``(h, w)`` of the feature map.
    out_shape : tuple of int
        ``(C, H, W)`` of the images to produce.

    Examples
    --------
    >>> import torch
    >>> ImageDecoder(16, (4, 4), (3, 16, 16))(torch.zeros(2, 16, 4, 4)).shape
    torch.Size([2, 3, 16, 16])
    """

    def __init__(self, in_channels: int, map_size: tuple[int, int],
                 out_shape: tuple[int, int, int]):
        super().__init__()
        out_channels, height, width = out_shape
        layers: list[nn.Module] = []
        channels = in_channels
        for size in halving_sizes(height, width, map_size):
            nxt = max(MIN_WIDTH, channels // 2)
            layers += [nn.Upsample(size=size, mode="nearest"),
                       nn.Conv2d(channels, nxt, 3, padding=1), nn.InstanceNorm2d(nxt),
                       nn.ReLU(inplace=True)]
            channels = nxt
        if tuple(map_size) != (height, width) and not layers:
            layers.append(nn.Upsample(size=(height, width), mode="nearest"))
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def latent_sizes(height: int, width: int, smallest: int = 4) -> list[tuple[int, int]]:
    """A latent generator's map sizes, from its first map up to the image: sides halved
    (rounding up) until the longer is at most ``smallest``, then reversed.

    Examples
    --------
    >>> latent_sizes(28, 28)
    [(4, 4), (7, 7), (14, 14), (28, 28)]
    """
    sizes = [(height, width)]
    while max(sizes[-1]) > smallest:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes[::-1]


class LatentGenerator(nn.Module):
    """z -> an image in [-1, 1]: Linear-BN-ReLU, then (upsample, conv3x3-BN-ReLU) blocks.

    DCGAN's layout (batch norm and ReLU in the generator, ``tanh`` out), with
    nearest-neighbour upsampling and a convolution in place of transposed
    convolutions, which avoids checkerboard artifacts and fits any size.

    Parameters
    ----------
    n_components : int
        Size of z.
    out_shape : tuple of int
        ``(C, H, W)`` of the images.
    width : int
        Channels of the first map, halved at each upsampling (at least 8).

    Examples
    --------
    >>> import torch
    >>> LatentGenerator(8, (1, 28, 28), 32)(torch.zeros(2, 8)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(self, n_components: int, out_shape: tuple[int, int, int], width: int):
        super().__init__()
        channels, height, width_px = out_shape
        sizes = latent_sizes(height, width_px)
        widths = [max(MIN_WIDTH, width >> i) for i in range(len(sizes))]
        (h0, w0) = sizes[0]
        self.stem = nn.Sequential(
            nn.Linear(n_components, widths[0] * h0 * w0, bias=False),
            nn.BatchNorm1d(widths[0] * h0 * w0), nn.ReLU(inplace=True),
            nn.Unflatten(1, (widths[0], h0, w0)))
        blocks: list[nn.Module] = []
        for size, c_in, c_out in zip(sizes[1:], widths, widths[1:]):
            blocks += [nn.Upsample(size=size, mode="nearest"),
                       nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(widths[len(sizes) - 1], channels, 3, padding=1),
                                  nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(z)))


class Standardize(Normalize):
    """Images in [-1, 1] <-> the normalized space the backbone sees (the fitted mean, std).

    The generators output ``tanh`` images; the rest of the model (encoders,
    the core's ``Preprocessor.inverse``) works in model space.
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> model space."""
        return super().forward((images + 1) * 0.5)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> [-1, 1]."""
        return super().inverse(x) * 2 - 1
