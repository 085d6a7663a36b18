"""Batched on-device augmentations with per-sample randomness.

Self-supervised methods need two or more randomly augmented views of every
sample, every step. Each op here draws one set of parameters per sample as
tensors and applies them to the whole batch in a single batched call (a
sampling grid for crops, ``torch.where`` masks for random application,
broadcasting for colour factors, a grouped convolution for blur), so there is
no Python loop over samples and the work stays on the input's device.

Every op is a plain callable ``op(x, generator) -> Tensor``. Image ops take a
float tensor of shape ``(n_samples, n_channels, height, width)`` with values in
[0, 1] and return one of the same dtype and device, again in [0, 1]. All
randomness comes from ``generator``, which must live on ``x``'s device, so a
run is reproducible and its augmentation state can be checkpointed with
``generator.get_state()``.

Examples
--------
>>> import torch
>>> from featurekit.data.augment import image_recipe
>>> augment = image_recipe(16)
>>> generator = torch.Generator().manual_seed(0)
>>> x = torch.rand(4, 3, 20, 20)
>>> view1, view2 = augment(x, generator), augment(x, generator)
>>> view1.shape
torch.Size([4, 3, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor

from featurekit.exceptions import ParameterError
from featurekit.hookspecs import hookimpl

#: The featurekit plugin API this plugin is written for (see docs/plugins.md).
FEATUREKIT_API_VERSION = 1

__all__ = [
    "ColorJitter",
    "Compose",
    "FeatureCorruption",
    "GaussianBlur",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomSolarize",
    "image_recipe",
]

Augmentation = Callable[[Tensor, torch.Generator], Tensor]

# ITU-R BT.601 luma weights (torchvision's rgb_to_grayscale rounds red to 0.2989).
_LUMA = (0.299, 0.587, 0.114)

# RandomResizedCrop draws this many candidate boxes per sample at once and
# keeps the first that fits, as torchvision tries up to 10 times in a loop.
_CROP_ATTEMPTS = 10


# --------------------------------------------------------------------------
# validation helpers


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_probability(owner: str, name: str, value: object) -> float:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a float in [0, 1]. "
            f"Got {value!r} instead."
        )
    return float(value)


def _check_non_negative(
    owner: str, name: str, value: object, high: float = math.inf
) -> float:
    if not _is_number(value) or not 0.0 <= value <= high:
        bound = "inf)" if high == math.inf else f"{high}]"
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a float in [0, {bound}. "
            f"Got {value!r} instead."
        )
    return float(value)


def _check_pair(
    owner: str, name: str, value: object, high: float, rule: str
) -> tuple[float, float]:
    ok = (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and 0.0 < value[0] <= value[1] <= high
    )
    if not ok:
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a pair {rule}. Got {value!r} instead."
        )
    return float(value[0]), float(value[1])


def _check_image(
    x: Tensor, generator: torch.Generator, owner: str, color: bool = False
) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"{owner} expects a float tensor of shape (n_samples, n_channels, height, "
            f"width) with values in [0, 1]; got dtype {x.dtype} and shape {tuple(x.shape)}."
        )
    if color and x.shape[1] not in (1, 3):
        raise ValueError(
            f"{owner} works on 1-channel (grey) or 3-channel (RGB) images; "
            f"got {x.shape[1]} channels."
        )
    _check_generator(x, generator)


def _check_generator(x: Tensor, generator: torch.Generator) -> None:
    if generator.device.type != x.device.type:
        raise ValueError(
            f"The generator is on {generator.device} but the data is on {x.device}; "
            "create it with torch.Generator(device=x.device)."
        )


# --------------------------------------------------------------------------
# sampling and colour helpers


def _uniform(
    generator: torch.Generator, shape: tuple[int, ...], low: float, high: float, like: Tensor
) -> Tensor:
    # Drawn in float32 so the random stream, and hence the views, do not
    # depend on the data's dtype (a bfloat16 draw would also be too coarse).
    u = torch.rand(shape, generator=generator, device=like.device)
    return (low + (high - low) * u).to(like.dtype)


def _coin(generator: torch.Generator, p: float, x: Tensor) -> Tensor:
    """Per-sample Bernoulli(p) mask, shaped to broadcast over (C, H, W)."""
    u = torch.rand(x.shape[0], generator=generator, device=x.device)
    return (u < p).view(-1, 1, 1, 1)


def _grayscale(x: Tensor) -> Tensor:
    """Luma of an RGB batch as one channel, or the batch itself when it has one."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (_LUMA[0] * r).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """torchvision's ``_blend``: ``factor * x + (1 - factor) * other``, clamped."""
    return torch.lerp(other, x, factor).clamp_(0.0, 1.0)


def _resized_crop(
    x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, size: tuple[int, int]
) -> Tensor:
    """Bilinearly resample box ``(top, left, height, width)`` of each sample to ``size``.

    Box coordinates are per-sample float tensors in pixels, measured from the
    image's top-left corner (pixel edges, not centres). For whole-pixel boxes
    this equals torchvision's ``resized_crop`` without antialiasing.
    """
    n, _, in_h, in_w = x.shape
    out_h, out_w = size

    # Sampling positions in grid_sample's normalized frame, where [-1, 1]
    # spans the pixel edges (align_corners=False), so a full-image box is
    # exactly the identity. A crop box has no rotation, so the grid is an
    # outer sum of a per-sample column and row, several times cheaper than
    # F.affine_grid's batched matmul.
    def axis(start: Tensor, extent: Tensor, in_len: int, out_len: int) -> Tensor:
        centers = (torch.arange(out_len, device=x.device, dtype=torch.float32) + 0.5) / out_len
        pixels = start.unsqueeze(1) + extent.unsqueeze(1) * centers
        # Clamp to the box's outermost pixel centres, as cropping before
        # resizing would, so that no pixel from outside the box leaks in.
        first, last = (start + 0.5).unsqueeze(1), (start + extent - 0.5).unsqueeze(1)
        pixels = pixels.clamp(min=first, max=last)
        return 2 * pixels / in_len - 1

    grid_x = axis(left, width, in_w, out_w).unsqueeze(1).expand(n, out_h, out_w)
    grid_y = axis(top, height, in_h, out_h).unsqueeze(2).expand(n, out_h, out_w)
    grid = torch.stack([grid_x, grid_y], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _adjust_colors(
    x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor, hue: Tensor | None
) -> Tensor:
    """torchvision's adjust_brightness, _contrast, _saturation, _hue with per-sample factors.

    Factors are tensors of shape (n_samples,); saturation and hue are skipped
    for 1-channel input, hue also when it is None.
    """
    def per_sample(factor: Tensor) -> Tensor:
        return factor.view(-1, 1, 1, 1)

    out = (x * per_sample(brightness)).clamp_(0.0, 1.0)
    # The mean of the luma is the luma of the channel means: one cheap reduction.
    mean = _grayscale(out.mean(dim=(2, 3), keepdim=True))
    out = _blend(out, mean, per_sample(contrast))
    if x.shape[1] == 3:
        out = _blend(out, _grayscale(out), per_sample(saturation))
        if hue is not None:
            out = _shift_hue(out, hue)
    return out


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of an RGB batch by ``shift`` (in turns, per sample).

    An HSV round trip in closed form. In sextants (hue * 6), red, green and
    blue sit at 0, 2 and 4; a channel equals the maximum within 1 sextant of
    the hue, the minimum beyond 2, and is linear in between, so with chroma
    ``max - min`` and circular distance ``d`` between the shifted hue and the
    channel's own, each channel is ``min + chroma * clamp(2 - d, 0, 1)``.
    Value and saturation (max and chroma) are unchanged by a hue shift.
    """
    maxc = x.amax(dim=1, keepdim=True)
    minc = x.amin(dim=1, keepdim=True)
    chroma = maxc - minc
    # Where chroma is 0 the pixel is grey and its hue is irrelevant; the
    # clamp only keeps the division finite.
    safe = chroma.clamp_min(torch.finfo(x.dtype).tiny)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # Ties go to red, then green, as in torchvision. (x.max(dim=1) would also
    # give the argmax, but measured ten times slower than amax on CPU.)
    hue = torch.where(
        r == maxc,
        (g - b) / safe,
        torch.where(g == maxc, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe),
    )
    hue = torch.remainder(hue + 6.0 * shift.view(-1, 1, 1, 1), 6.0)
    centers = torch.arange(0.0, 6.0, 2.0, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    distance = (hue - centers).abs_()
    distance = torch.minimum(distance, 6.0 - distance)
    return torch.addcmul(minc, chroma, (2.0 - distance).clamp_(0.0, 1.0))


# --------------------------------------------------------------------------
# image ops


class _Op:
    """Shared ``__repr__``: the constructor's arguments, as stored."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class RandomResizedCrop(_Op):
    """Crop a random box of each sample and resize it (bilinear) to ``size``.

    Boxes follow torchvision's ``RandomResizedCrop``: area a uniform fraction
    in ``scale`` of the image, log aspect ratio uniform in ``log(ratio)``, up to
    10 candidates per sample with a centre-crop fallback. Unlike torchvision,
    box sides and offsets are continuous rather than rounded to whole pixels,
    and downscaling is not antialiased.

    Parameters
    ----------
    size : int or tuple of (int, int)
        Output ``(height, width)``; an int gives a square.
    scale : tuple of (float, float), default=(0.08, 1.0)
        Range of the box area as a fraction of the image area.
    ratio : tuple of (float, float), default=(3/4, 4/3)
        Range of the box aspect ratio (width / height).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        owner = type(self).__name__
        pair = (size, size) if isinstance(size, int) else size
        if not (
            isinstance(pair, Sequence)
            and len(pair) == 2
            and all(_is_positive_int(s) for s in pair)
        ):
            raise ParameterError(
                f"The 'size' parameter of {owner} must be a positive int or a pair of "
                f"positive ints. Got {size!r} instead."
            )
        self.size = (pair[0], pair[1])
        self.scale = _check_pair(owner, "scale", scale, 1.0, "0 < lo <= hi <= 1")
        self.ratio = _check_pair(owner, "ratio", ratio, math.inf, "0 < lo <= hi")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_image(x, generator, type(self).__name__)
        n, _, height, width = x.shape
        k = _CROP_ATTEMPTS
        u = torch.rand(n, 2 * k + 2, generator=generator, device=x.device, dtype=torch.float32)
        lo, hi = self.scale
        area = height * width * (lo + (hi - lo) * u[:, :k])
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, k : 2 * k])
        w = torch.sqrt(area * aspect)
        h = torch.sqrt(area / aspect)
        fits = (w <= width) & (h <= height)
        # argmax returns the first maximal index, i.e. the first box that fits.
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
        w = w.gather(1, first).squeeze(1)
        h = h.gather(1, first).squeeze(1)
        fallback_w, fallback_h = self._fallback(height, width)
        any_fit = fits.any(dim=1)
        w = torch.where(any_fit, w, fallback_w)
        h = torch.where(any_fit, h, fallback_h)
        left = u[:, 2 * k] * (width - w)
        top = u[:, 2 * k + 1] * (height - h)
        return _resized_crop(x, top, left, h, w, self.size)

    def _fallback(self, height: int, width: int) -> tuple[float, float]:
        """torchvision's centre box when no candidate fits: clamp the aspect ratio."""
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            return float(width), width / self.ratio[0]
        if in_ratio > self.ratio[1]:
            return height * self.ratio[1], float(height)
        return float(width), float(height)


class RandomHorizontalFlip(_Op):
    """Mirror each sample left-right with probability ``p``.

    Parameters
    ----------
    p : float, default=0.5
        Probability of flipping a sample.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = _check_probability(type(self).__name__, "p", p)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_image(x, generator, type(self).__name__)
        return torch.where(_coin(generator, self.p, x), x.flip(-1), x)


class ColorJitter(_Op):
    """With probability ``p``, jitter brightness, contrast, saturation and hue.

    Each sample gets its own factors, drawn as torchvision's ``ColorJitter``
    draws them: brightness, contrast and saturation factors uniform in
    ``[max(0, 1 - v), 1 + v]``, a hue shift uniform in ``[-hue, hue]`` turns.
    The adjustments follow torchvision's definitions but run in a fixed order
    (brightness, contrast, saturation, hue) instead of a random one. The
    probability ``p`` plays the part of SimCLR's ``RandomApply(..., p=0.8)``.
    Saturation and hue are skipped for 1-channel input.

    Parameters
    ----------
    brightness, contrast, saturation : float, default=0.4
        Jitter strengths, non-negative; 0 leaves that property unchanged.
    hue : float, default=0.1
        Largest hue shift, in [0, 0.5] turns.
    p : float, default=0.8
        Probability that a sample is jittered at all.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
    ) -> None:
        owner = type(self).__name__
        self.brightness = _check_non_negative(owner, "brightness", brightness)
        self.contrast = _check_non_negative(owner, "contrast", contrast)
        self.saturation = _check_non_negative(owner, "saturation", saturation)
        self.hue = _check_non_negative(owner, "hue", hue, high=0.5)
        self.p = _check_probability(owner, "p", p)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_image(x, generator, type(self).__name__, color=True)
        n = x.shape[0]
        apply = _coin(generator, self.p, x)

        def factor(strength: float) -> Tensor:
            return _uniform(generator, (n,), max(0.0, 1.0 - strength), 1.0 + strength, x)

        brightness = factor(self.brightness)
        contrast = factor(self.contrast)
        saturation = factor(self.saturation)
        hue = _uniform(generator, (n,), -self.hue, self.hue, x) if self.hue > 0 else None
        out = _adjust_colors(x, brightness, contrast, saturation, hue)
        return torch.where(apply, out, x)


class RandomGrayscale(_Op):
    """Turn each sample to grey (ITU-R 601 luma) with probability ``p``.

    The output keeps the input's channel count; 1-channel input is returned
    as it is.

    Parameters
    ----------
    p : float, default=0.2
        Probability of converting a sample.
    """

    def __init__(self, p: float = 0.2) -> None:
        self.p = _check_probability(type(self).__name__, "p", p)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_image(x, generator, type(self).__name__, color=True)
        if x.shape[1] == 1:
            return x
        return torch.where(_coin(generator, self.p, x), _grayscale(x), x)


class GaussianBlur(_Op):
    """Blur each sample with probability ``p``, with its own Gaussian width.

    Each sample gets a sigma uniform in ``sigma`` and a separable kernel of
    ``kernel_size`` taps; all samples are blurred at once by a grouped
    convolution with one group per (sample, channel), with reflect padding.

    Parameters
    ----------
    kernel_size : int
        Odd number of kernel taps; ``kernel_size // 2`` must be smaller than
        the image's height and width (reflect padding needs that).
    sigma : tuple of (float, float), default=(0.1, 2.0)
        Range of the Gaussian standard deviation, in pixels.
    p : float, default=0.5
        Probability of blurring a sample.
    """

    def __init__(
        self, kernel_size: int, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5
    ) -> None:
        owner = type(self).__name__
        if not (_is_positive_int(kernel_size) and kernel_size % 2 == 1):
            raise ParameterError(
                f"The 'kernel_size' parameter of {owner} must be an odd positive int. "
                f"Got {kernel_size!r} instead."
            )
        self.kernel_size = kernel_size
        self.sigma = _check_pair(owner, "sigma", sigma, math.inf, "0 < lo <= hi")
        self.p = _check_probability(owner, "p", p)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_image(x, generator, type(self).__name__)
        n, c, height, width = x.shape
        pad = self.kernel_size // 2
        if pad >= min(height, width):
            raise ValueError(
                f"GaussianBlur(kernel_size={self.kernel_size}) needs images larger than "
                f"{pad} pixels a side for reflect padding; got {height}x{width}."
            )
        apply = _coin(generator, self.p, x)
        sigma = _uniform(generator, (n, 1), *self.sigma, x)
        taps = torch.arange(self.kernel_size, device=x.device, dtype=x.dtype) - pad
        kernel = torch.exp(-(taps**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        kernel = kernel.repeat_interleave(c, dim=0)  # one kernel per (sample, channel) group
        planes = F.pad(x.reshape(1, n * c, height, width), (pad, pad, pad, pad), mode="reflect")
        planes = F.conv2d(planes, kernel.view(n * c, 1, 1, -1), groups=n * c)
        planes = F.conv2d(planes, kernel.view(n * c, 1, -1, 1), groups=n * c)
        return torch.where(apply, planes.view(n, c, height, width), x)


class RandomSolarize(_Op):
    """Invert, with probability ``p``, every pixel of a sample at or above ``threshold``.

    Parameters
    ----------
    threshold : float, default=0.5
        Pixels with value ``>= threshold`` become ``1 - value``.
    p : float, default=0.0
        Probability of solarizing a sample (BYOL uses 0.2 on its second view).
    """

    def __init__(self, threshold: float = 0.5, p: float = 0.0) -> None:
        owner = type(self).__name__
        self.threshold = _check_non_negative(owner, "threshold", threshold, high=1.0)
        self.p = _check_probability(owner, "p", p)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_image(x, generator, type(self).__name__)
        invert = _coin(generator, self.p, x) & (x >= self.threshold)
        return torch.where(invert, 1.0 - x, x)


class Compose(_Op):
    """Apply augmentations one after another, sharing one generator.

    Parameters
    ----------
    ops : sequence of callables
        Each called as ``op(x, generator)``.
    """

    def __init__(self, ops: Sequence[Augmentation]) -> None:
        if not (
            isinstance(ops, Sequence)
            and not isinstance(ops, str)
            and all(callable(op) for op in ops)
        ):
            raise ParameterError(
                "The 'ops' parameter of Compose must be a sequence of callables "
                f"op(x, generator). Got {ops!r} instead."
            )
        self.ops = list(ops)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for op in self.ops:
            x = op(x, generator)
        return x

    def __repr__(self) -> str:
        body = "".join(f"\n    {op!r}," for op in self.ops)
        return f"Compose([{body}\n])" if self.ops else "Compose([])"


# --------------------------------------------------------------------------
# tabular op


class FeatureCorruption(_Op):
    """SCARF feature corruption for tabular batches.

    Each entry is, with probability ``rate``, replaced by the same feature's
    value in another row of the batch chosen at random (a draw from that
    feature's empirical marginal, excluding the row itself so that a
    corrupted entry really changes); then Gaussian noise of standard
    deviation ``noise_std`` is added to every entry.

    Parameters
    ----------
    rate : float, default=0.6
        Probability that an entry is corrupted.
    noise_std : float, default=0.0
        Standard deviation of the additive noise; 0 adds none.

    References
    ----------
    .. [1] D. Bahri, H. Jiang, Y. Tay, D. Metzler. "SCARF: Self-Supervised
       Contrastive Learning using Random Feature Corruption." ICLR 2022.

    Examples
    --------
    >>> import torch
    >>> corrupt = FeatureCorruption(rate=0.5)
    >>> corrupt(torch.randn(8, 5), torch.Generator().manual_seed(0)).shape
    torch.Size([8, 5])
    """

    def __init__(self, rate: float = 0.6, noise_std: float = 0.0) -> None:
        owner = type(self).__name__
        self.rate = _check_probability(owner, "rate", rate)
        self.noise_std = _check_non_negative(owner, "noise_std", noise_std)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.ndim != 2 or not x.is_floating_point():
            raise ValueError(
                "FeatureCorruption expects a float tensor of shape (n_samples, n_features); "
                f"got dtype {x.dtype} and shape {tuple(x.shape)}."
            )
        _check_generator(x, generator)
        n, n_features = x.shape
        if n < 2:
            raise ValueError(
                "FeatureCorruption needs at least 2 rows to draw replacement values from; "
                "got a batch of 1 (use drop_last=True in the DataLoader)."
            )
        corrupt = torch.rand(n, n_features, generator=generator, device=x.device) < self.rate
        # Draw from the n - 1 other rows: skip over the row's own index.
        donor = torch.randint(0, n - 1, (n, n_features), generator=generator, device=x.device)
        donor += donor >= torch.arange(n, device=x.device).unsqueeze(1)
        out = torch.where(corrupt, x.gather(0, donor), x)
        if self.noise_std > 0:
            noise = torch.randn(n, n_features, generator=generator, device=x.device)
            out = out + self.noise_std * noise.to(x.dtype)
        return out


# --------------------------------------------------------------------------
# recipe


def image_recipe(
    size: int,
    *,
    strength: float = 1.0,
    blur: bool = False,
    solarize_p: float = 0.0,
    min_scale: float = 0.08,
) -> Compose:
    """SimCLR-style default views: crop, flip, colour jitter, grayscale.

    Methods with other paper settings (BYOL's asymmetric blur and
    solarization, MoCo v2's crop scale) build their own ``Compose`` or pass
    the matching arguments here.

    Parameters
    ----------
    size : int
        Side of the square output.
    strength : float, default=1.0
        Colour-jitter strength s: brightness, contrast and saturation 0.4 s,
        hue 0.1 s (SimCLR's s; at most 5, where hue reaches 0.5).
    blur : bool, default=False
        Add a Gaussian blur with p=0.5 and a kernel about 10% of ``size``
        (odd, at least 3), as SimCLR does on ImageNet.
    solarize_p : float, default=0.0
        Probability of solarizing at 0.5; 0 leaves the op out.
    min_scale : float, default=0.08
        Lower end of the crop's area range.

    Returns
    -------
    Compose
        The recipe, called as ``recipe(x, generator)``.

    References
    ----------
    .. [1] T. Chen, S. Kornblith, M. Norouzi, G. Hinton. "A Simple Framework
       for Contrastive Learning of Visual Representations." ICML 2020.
    """
    if not _is_number(strength) or not 0.0 <= strength <= 5.0:
        raise ParameterError(
            "The 'strength' parameter of image_recipe must be a float in [0, 5]. "
            f"Got {strength!r} instead."
        )
    ops: list[Augmentation] = [
        RandomResizedCrop(size, scale=(min_scale, 1.0)),
        RandomHorizontalFlip(0.5),
        ColorJitter(0.4 * strength, 0.4 * strength, 0.4 * strength, 0.1 * strength, p=0.8),
        RandomGrayscale(0.2),
    ]
    if blur:
        # SimCLR's kernel: 10% of the side, made odd by rounding up.
        kernel_size = max(3, int(0.1 * size) // 2 * 2 + 1)
        ops.append(GaussianBlur(kernel_size, sigma=(0.1, 2.0), p=0.5))
    if solarize_p != 0:
        ops.append(RandomSolarize(0.5, p=solarize_p))
    return Compose(ops)


# --------------------------------------------------------------------------
# registration: the built-in ops, by name, beside those of plugins


@hookimpl
def featurekit_register_augmentations(registry) -> None:
    """featurekit's own ops, registered through the hook plugins use too (the
    ``augmentations`` entry point in pyproject.toml)."""
    image_ops = {
        "random_resized_crop": (RandomResizedCrop, "crop a random area and aspect, resize"),
        "random_horizontal_flip": (RandomHorizontalFlip, "mirror left-right"),
        "color_jitter": (ColorJitter, "random brightness, contrast, saturation and hue"),
        "random_grayscale": (RandomGrayscale, "convert to grey (kept as 3 channels)"),
        "gaussian_blur": (GaussianBlur, "blur with a random sigma"),
        "random_solarize": (RandomSolarize, "invert pixels above a threshold"),
        "image_recipe": (image_recipe, "SimCLR's default views: crop, flip, jitter, grey"),
        "compose": (Compose, "apply a list of ops in turn (ops=[...])"),
    }
    for name, (factory, description) in image_ops.items():
        registry.add_augmentation(name, factory, modality="image", description=description)
    registry.add_augmentation("feature_corruption", FeatureCorruption, modality="tabular",
                              description="replace features by other rows' values, add noise")
