"""ContentStyle's networks: an instance-normalized content encoder, a global style
encoder and an AdaIN decoder (Huang & Belongie 2017; Chou et al. 2019, AdaIN-VC).

The content encoder is registered as the ``content_encoder`` backbone: its
convolutions are each followed by instance normalization without affine
parameters, which removes every channel's per-sample mean and scale, the
global statistics a style code carries (Ulyanov et al. 2016; AdaIN-VC's
content encoder). The style encoder has no normalization at all, and pools
globally, so it keeps exactly those statistics. The decoder renders a content
map in a style by adaptive instance normalization: each layer's features are
instance-normalized and then scaled and shifted by values computed from the
style code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from featurekit.backbones._common import check_int, no_pretrained, strict_kwargs
from featurekit.exceptions import ParameterError
from featurekit_reconstructive.decoders import upsampling_sizes


def conv_in_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    """A 3x3 convolution, instance norm without affine parameters, ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
            nn.InstanceNorm2d(c_out, affine=False), nn.ReLU(inplace=True)]


class ContentEncoder(nn.Module):
    """Conv-IN-ReLU blocks of widths (w, 2w, 4w) and strides (1, 2, 2).

    A 28 px image ends on a 7 x 7 map of ``4w`` channels (:meth:`feature_map`).
    As a backbone, ``forward`` gives that map average-pooled to a 2 x 2 grid
    (``16w`` features): a global mean of an instance-normalized map would be
    nearly constant, so the grid keeps the spatial layout, which is the content.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    width : int
        ``w``, the channels of the first block.

    Examples
    --------
    >>> enc = ContentEncoder(1, 4)
    >>> enc.feature_map(torch.zeros(2, 1, 28, 28)).shape, enc(torch.zeros(2, 1, 28, 28)).shape
    (torch.Size([2, 16, 7, 7]), torch.Size([2, 64]))
    """

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.features = nn.Sequential(*conv_in_relu(in_channels, width, 1),
                                      *conv_in_relu(width, 2 * width, 2),
                                      *conv_in_relu(2 * width, 4 * width, 2))
        self.out_features = 16 * width

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 2).flatten(1)


@strict_kwargs
def content_encoder(*, in_channels: int = 3, input_size: int = 32, small_stem: bool = False,
                    weights: str | None = None, width: int = 32) -> ContentEncoder:
    """Build a :class:`ContentEncoder` (about 0.1 M parameters at the default width).

    Parameters
    ----------
    in_channels : int, default=3
        Channels of the input images.
    input_size : int, default=32
        Side of the input images; any side of at least 4 px works.
    small_stem : bool, default=False
        Accepted for the common factory contract.
    weights : None, default=None
        There are no pretrained weights.
    width : int, default=32
        Channels of the first block; the map has ``4 * width``.
    """
    check_int(input_size, "input_size", "content_encoder")
    no_pretrained("content_encoder", weights)
    return ContentEncoder(check_int(in_channels, "in_channels", "content_encoder"),
                          check_int(width, "width", "content_encoder"))


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map of ``backbone``: its ``feature_map(x)`` method, or its
    ``features`` submodule (``content_encoder``, ``small_cnn``, VGG)."""
    if callable(getattr(backbone, "feature_map", None)):
        return backbone.feature_map(x)
    return backbone.features(x)


def check_feature_map(backbone: nn.Module, name: object, owner: str) -> None:
    """Raise a ParameterError unless :func:`feature_map` can use ``backbone``."""
    if not (callable(getattr(backbone, "feature_map", None))
            or isinstance(getattr(backbone, "features", None), nn.Module)):
        raise ParameterError(
            f"{owner}'s content encoder needs a backbone that gives a feature map (a "
            f"`features` submodule or a `feature_map` method); {name!r} does not. Use "
            "backbone='content_encoder' (instance-normalized, the default) or 'small_cnn'")


class ContentHead(nn.Module):
    """The content map: a 1x1 convolution to ``channels``, then instance norm (no affine)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, 1)
        self.norm = nn.InstanceNorm2d(channels, affine=False)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(fmap))


class StyleEncoder(nn.Module):
    """Conv-ReLU blocks (widths w, 2w, 4w; strides 2, 2, 2), global average pool, Linear.

    No normalization layer, so that the per-channel statistics of the input
    (and of every layer) reach the style code, as AdaIN-VC's speaker encoder.
    A global code needs no full-resolution layer, hence the stride-2 start.

    Examples
    --------
    >>> StyleEncoder(1, 4, 8)(torch.zeros(3, 1, 16, 16)).shape
    torch.Size([3, 8])
    """

    def __init__(self, in_channels: int, width: int, style_dim: int):
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip((in_channels, *widths[:-1]), widths, (2, 2, 2)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], style_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def adain(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
          eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalization: ``scale * (x - mean) / std + shift`` per channel.

    Huang & Belongie (2017), eq. 8, with the target statistics predicted from a
    style code (as in MUNIT and AdaIN-VC) rather than taken from a style image.

    Parameters
    ----------
    x : Tensor of shape (n, c, h, w)
    scale, shift : Tensor of shape (n, c)

    Examples
    --------
    >>> x = torch.randn(2, 3, 5, 5)
    >>> y = adain(x, torch.full((2, 3), 2.0), torch.ones(2, 3))
    >>> [round(float(v), 3) for v in (y.mean(), y.std(dim=(2, 3), unbiased=False).mean())]
    [1.0, 2.0]
    """
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = (x.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return (x - mean) / std * scale[:, :, None, None] + shift[:, :, None, None]


class AdaINDecoder(nn.Module):
    """A content map and a style code -> an image in model space.

    A 3x3 convolution from the content map, then one block per feature-map
    size from the map's up to the image's (nearest upsampling between them,
    each side doubling, as :func:`featurekit_reconstructive.decoders.upsampling_sizes`):
    AdaIN, ReLU, 3x3 convolution. A two-layer MLP maps the style code to every
    block's AdaIN scale and shift (the scale as ``1 + output``).

    Parameters
    ----------
    content_channels : int
        Channels of the content map.
    map_size : tuple of int
        (h, w) of the content map.
    out_shape : tuple of int
        (C, H, W) of the images.
    style_dim : int
        Size of the style code.
    width : int
        Channels of the first block; halved at each upsampling, down to 8.

    Examples
    --------
    >>> dec = AdaINDecoder(8, (7, 7), (1, 28, 28), style_dim=4, width=16)
    >>> dec(torch.zeros(2, 8, 7, 7), torch.zeros(2, 4)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(self, content_channels: int, map_size: tuple[int, int],
                 out_shape: tuple[int, int, int], style_dim: int, width: int):
        super().__init__()
        channels, height, width_px = out_shape
        sizes = upsampling_sizes(height, width_px, smallest=max(map_size))
        self.sizes = [tuple(s) for s in sizes]
        widths = [max(8, width >> i) for i in range(len(sizes))]
        self.stem = nn.Conv2d(content_channels, widths[0], 3, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, padding=1)
            for c_in, c_out in zip(widths, [*widths[1:], widths[-1]]))
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self.widths = widths
        hidden = max(64, 2 * style_dim)
        self.mlp = nn.Sequential(nn.Linear(style_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * sum(widths)))

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        params = self.mlp(style.float()).split([w for w in self.widths for _ in (0, 1)], dim=1)
        h = content
        if tuple(h.shape[-2:]) != self.sizes[0]:
            h = F.interpolate(h, size=self.sizes[0], mode="nearest")
        h = self.stem(h)
        for i, conv in enumerate(self.convs):
            if i > 0:
                h = F.interpolate(h, size=self.sizes[i], mode="nearest")
            h = F.relu(adain(h, 1 + params[2 * i], params[2 * i + 1]))
            h = conv(h)
        return self.out(F.relu(h))


class GroupCritic(nn.Module):
    """An MLP guessing the group from a content code: the adversary.

    Its input is standardized per batch (batch norm without affine
    parameters), as a linear probe's ``StandardScaler`` does: otherwise
    directions of small variance, where a probe still reads the group, would
    hardly move the critic and so never be cleaned.
    """

    def __init__(self, in_features: int, n_groups: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm1d(in_features, affine=False),
                                 nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, n_groups))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code.float())


class GroupCodes(nn.Module):
    """The training rows' group codes, looked up by ``batch.index`` during fit.

    A non-persistent buffer: it follows the modules to the device but is not
    part of the model's state (a saved or loaded model holds none).
    """

    def __init__(self, codes: torch.Tensor):
        super().__init__()
        self.register_buffer("codes", codes, persistent=False)


class VectorQuantizer(nn.Module):
    """Vector quantization of a content map, position by position (van den Oord et al. 2017).

    Each position's ``dim`` channels are replaced by the nearest of
    ``n_codes`` learned code vectors; the encoder gets the gradient straight
    through (the quantized value in the forward pass, the identity in the
    backward pass). A small codebook is an information bottleneck that keeps
    what the frames share across speakers (the phones) and drops the rest
    (VQVC, Wu & Lee 2020). The loss is VQ-VAE's: the codebook term
    ``|sg(z) - e|^2`` plus ``beta`` times the commitment term ``|z - sg(e)|^2``.
    Code vectors start as standard normal draws, the scale of an
    instance-normalized map.

    Examples
    --------
    >>> vq = VectorQuantizer(4, 3)
    >>> q, loss, perplexity = vq(torch.randn(2, 3, 5))
    >>> q.shape, bool(loss > 0), 1.0 <= float(perplexity) <= 4.0
    (torch.Size([2, 3, 5]), True, True)
    """

    def __init__(self, n_codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(n_codes, dim))
        self.beta = beta

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z`` (B, dim, ...) -> the quantized map (straight-through), the VQ loss and
        the perplexity of the codes used (over ``mask``'s positions when given)."""
        flat = z.float().movedim(1, -1).reshape(-1, z.shape[1])
        codebook = self.codebook.float()
        with torch.autocast(z.device.type, enabled=False):  # nearest codes in float32
            distance = (flat.square().sum(1, keepdim=True) - 2 * flat @ codebook.T
                        + codebook.square().sum(1)[None, :])
        index = distance.argmin(dim=1)
        quantized = codebook[index]
        per_position = ((quantized - flat.detach()).square().mean(1)
                        + self.beta * (flat - quantized.detach()).square().mean(1))
        valid = (torch.ones_like(per_position, dtype=torch.bool) if mask is None
                 else mask.reshape(-1))
        loss = per_position[valid].mean()
        usage = torch.bincount(index[valid], minlength=len(codebook)).float()
        usage = usage / usage.sum().clamp_min(1.0)
        perplexity = torch.exp(-(usage * (usage + 1e-10).log()).sum())
        out = flat + (quantized - flat).detach()
        out = out.reshape(*z.movedim(1, -1).shape).movedim(-1, 1).to(z.dtype)
        return out, loss, perplexity.detach()
