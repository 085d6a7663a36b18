"""Decoders from a latent code back to the backbone's input space.

The autoencoders (AE, denoising AE, VAE) decode with a mirror of their
encoder: an upsampling CNN for images, an MLP for tabular rows. Both output a
batch in model space (normalized images, standardized rows), so the core's
``Preprocessor.inverse`` gives it back in the input's convention.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from featurekit.method import BuildSpec

#: The decoder's first feature map has sides of at most this many pixels.
SMALLEST_MAP = 4
#: Channels of the decoder's first feature map, at most (halved at each upsampling).
MAX_WIDTH = 256
#: Channels of the decoder's last feature maps, at least.
MIN_WIDTH = 8


def upsampling_sizes(height: int, width: int, smallest: int = SMALLEST_MAP
                     ) -> list[tuple[int, int]]:
    """The feature-map sizes of an image decoder, from its first map up to the image.

    Sides are halved (rounding up) until the longer one is at most
    ``smallest``, as a stride-2 encoder shrinks them, then listed in
    decoding order, so a 28 px image decodes from 4, 7, 14 to 28 px.

    Examples
    --------
    >>> upsampling_sizes(28, 28)
    [(4, 4), (7, 7), (14, 14), (28, 28)]
    >>> upsampling_sizes(8, 12)
    [(2, 3), (4, 6), (8, 12)]
    """
    sizes = [(height, width)]
    while max(sizes[-1]) > smallest:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes[::-1]


class ConvDecoder(nn.Module):
    """A latent code -> an image: Linear, then (upsample, conv3x3-BN-ReLU) blocks.

    Nearest-neighbour upsampling followed by a convolution, rather than a
    transposed convolution, avoids checkerboard artifacts (Odena et al.,
    "Deconvolution and Checkerboard Artifacts", Distill 2016). The
    channels halve at each upsampling, mirroring a CNN encoder whose widths
    double as it downsamples (featurekit's ``small_cnn``: 32, 64, 128, 256).

    Parameters
    ----------
    n_components : int
        Size of the latent code.
    out_shape : tuple of int
        ``(C, H, W)`` of the images to produce.
    width : int
        Channels of the first feature map.

    Examples
    --------
    >>> decoder = ConvDecoder(16, (1, 28, 28), width=64)
    >>> decoder(torch.randn(2, 16)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(self, n_components: int, out_shape: tuple[int, int, int], width: int):
        super().__init__()
        channels, height, width_px = out_shape
        sizes = upsampling_sizes(height, width_px)
        (h0, w0), widths = sizes[0], [max(MIN_WIDTH, width >> i) for i in range(len(sizes))]
        self.stem = nn.Sequential(
            nn.Linear(n_components, widths[0] * h0 * w0, bias=False),
            nn.BatchNorm1d(widths[0] * h0 * w0), nn.ReLU(inplace=True),
            nn.Unflatten(1, (widths[0], h0, w0)))
        blocks: list[nn.Module] = []
        for size, c_in, c_out in zip(sizes[1:], widths, widths[1:]):
            blocks += [nn.Upsample(size=size, mode="nearest"),
                       nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(widths[-1], channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(z)))


class MLPDecoder(nn.Module):
    """A latent code -> a row: Linear-BN-ReLU layers, then a Linear to the features.

    Parameters
    ----------
    n_components : int
        Size of the latent code.
    n_features : int
        Columns of the rows to produce.
    hidden : sequence of int
        Width of each hidden layer, in decoding order.

    Examples
    --------
    >>> MLPDecoder(4, 10, (16, 32))(torch.randn(3, 4)).shape
    torch.Size([3, 10])
    """

    def __init__(self, n_components: int, n_features: int, hidden: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((n_components, *hidden[:-1]), hidden):
            layers += [nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out),
                       nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers, nn.Linear(hidden[-1], n_features))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


def mirrored_widths(backbone: nn.Module, feature_dim: int) -> tuple[int, ...]:
    """The widths of ``backbone``'s Linear layers in reverse order (its mirror), or
    ``(feature_dim,)`` when it has none.

    Examples
    --------
    >>> mirrored_widths(nn.Sequential(nn.Linear(8, 64), nn.Linear(64, 16)), 16)
    (16, 64)
    """
    widths = [m.out_features for m in backbone.modules() if isinstance(m, nn.Linear)]
    return tuple(widths[::-1]) or (feature_dim,)


def make_decoder(spec: BuildSpec, backbone: nn.Module, n_components: int) -> nn.Module:
    """The decoder mirroring ``backbone`` for the data ``spec`` describes.

    Images get a :class:`ConvDecoder` whose first map has as many channels as
    the backbone has features (at most 256); tables get an
    :class:`MLPDecoder` with the backbone's Linear widths reversed.
    """
    if spec.modality == "image":
        width = min(MAX_WIDTH, max(MIN_WIDTH, spec.backbone_dim))
        return ConvDecoder(n_components, tuple(spec.input_shape), width)
    return MLPDecoder(n_components, spec.input_shape[0],
                      mirrored_widths(backbone, spec.backbone_dim))
