"""Small backbones for tiny images and tabular data: quick to train on a CPU."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from featurekit.backbones._common import check_int, no_pretrained, strict_kwargs
from featurekit.exceptions import ParameterError

# Strides 1, 2, 2, 2: an 8 px image (sklearn's digits) ends on a 1x1 map.
SMALL_CNN_MIN_INPUT_SIZE = 8


class SmallCNN(nn.Module):
    """Four conv3x3-BN-ReLU blocks of widths (w, 2w, 4w, 8w), then a global pool.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    width : int
        Width ``w`` of the first block; the features have ``8 * width`` dims.

    Attributes
    ----------
    out_features : int
        Dimension of the features, ``8 * width``.
    """

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        blocks: list[nn.Module] = []
        for c_in, c_out, stride in zip((in_channels, *widths[:-1]), widths, (1, 2, 2, 2)):
            blocks += [
                # No conv bias: the batch norm right after would cancel it.
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class MLP(nn.Module):
    """Linear-BatchNorm1d-ReLU layers (or Linear-ReLU) for tabular data.

    Parameters
    ----------
    n_features : int
        Columns of the input.
    hidden : tuple of int
        Width of each layer; the last is the feature dimension.
    batch_norm : bool, default=True
        Batch norm after each linear layer (without it, the layers have biases).

    Attributes
    ----------
    out_features : int
        Dimension of the features, ``hidden[-1]``.
    """

    def __init__(self, n_features: int, hidden: tuple[int, ...], batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((n_features, *hidden[:-1]), hidden):
            layers.append(nn.Linear(c_in, c_out, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(c_out))
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)
        self.out_features = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@strict_kwargs
def small_cnn(*, in_channels: int = 3, input_size: int = 32, small_stem: bool = False,
              weights: str | None = None, width: int = 32) -> SmallCNN:
    """Build a :class:`SmallCNN` (about 0.39 M parameters at the default width).

    Parameters
    ----------
    in_channels : int, default=3
        Channels of the input images.
    input_size : int, default=32
        Side of the input images; any side of at least 8 px works.
    small_stem : bool, default=False
        Accepted for the common factory contract; the network is built for
        small images either way.
    weights : None, default=None
        Accepted for the common factory contract; there are no pretrained
        weights.
    width : int, default=32
        Width of the first block; the features have ``8 * width`` dims.

    Returns
    -------
    SmallCNN
        ``forward`` maps ``(n, in_channels, h, w)`` to ``(n, 8 * width)``.
    """
    in_channels = check_int(in_channels, "in_channels", "small_cnn")
    check_int(input_size, "input_size", "small_cnn")
    no_pretrained("small_cnn", weights)
    return SmallCNN(in_channels, check_int(width, "width", "small_cnn"))


@strict_kwargs
def mlp(*, n_features: int, hidden: Sequence[int] = (256, 256), batch_norm: bool = True) -> MLP:
    """Build an :class:`MLP` for tabular data.

    Parameters
    ----------
    n_features : int
        Columns of the input.
    hidden : sequence of int, default=(256, 256)
        Width of each layer; the last is the feature dimension.
    batch_norm : bool, default=True
        Batch norm after each linear layer; ``False`` gives Linear-ReLU layers.

    Returns
    -------
    MLP
        ``forward`` maps ``(n, n_features)`` to ``(n, hidden[-1])``.
    """
    n_features = check_int(n_features, "n_features", "mlp")
    if (isinstance(hidden, str) or not isinstance(hidden, Sequence) or not hidden
            or not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1
                       for h in hidden)):
        raise ParameterError(
            f"The 'hidden' parameter of backbone 'mlp' must be a non-empty tuple of "
            f"positive ints, such as (256, 256). Got {hidden!r} instead.")
    if not isinstance(batch_norm, bool):
        raise ParameterError(f"The 'batch_norm' parameter of backbone 'mlp' must be True or "
                             f"False. Got {batch_norm!r} instead.")
    return MLP(n_features, tuple(int(h) for h in hidden), batch_norm)
