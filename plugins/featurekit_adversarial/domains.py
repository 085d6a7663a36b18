"""Two unpaired image domains in scikit-learn form, for CycleGAN.

``fit(X, domains=d)`` gets one array (or list) of images and a domain value
per image. This module checks that there are exactly two domains, records
each domain's native format (the shape, channels and layout of its
samples, so ``translate`` can give images back that way), brings both to a
common working format, and holds out a few images per domain to measure
the cycle error.

The working format, the documented rule:

- **size**: images of both domains are resized to ``image_size`` (their
  shorter side scaled to it with antialiased bilinear interpolation, then
  the centre square cropped: featurekit's rule for ``image_size=``).
  Without ``image_size`` the domains must share one size.
- **channels**: if one domain is grey and the other RGB, the grey images
  are repeated to three channels; translating to the grey domain averages
  the channels back.
- **values**: uint8 images of both domains stay uint8; a mix of uint8
  (0-255) and float ([0, 1]) images is converted to float in [0, 1].
- **framing** (``framing="content"``, off by default): before the resize,
  each domain's images are cropped to that domain's *content square*
  (:func:`content_box`), the square where its images typically have their
  content, found from the images alone: so two domains that frame their
  objects differently (digits filling a 16 px frame beside digits in a 20 px
  box of a 28 px frame) meet at one scale, and the generators need not learn
  to zoom. ``translate`` crops its input to the source domain's square and
  pastes its output into the target domain's square on that domain's
  background. With the default ``"full"`` the whole image is used, as in
  the paper.
- **deskewing** (``deskew=True``, with ``framing="content"``, off by
  default): before the content square is found, every image is sheared
  along its rows about its ink's centre of mass until the ink's second-order
  moment mu11 is zero (:func:`deskew`, the classic moment deskewing): slant
  is a normalisation one domain may have and the other not (USPS digits are
  deskewed, MNIST's are not), and a generator shears as poorly as it zooms.
  ``translate`` deskews its input the same way; its output is left upright.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from featurekit.data import inputs
from featurekit.exceptions import InputError, ParameterError


@dataclass
class DomainData:
    """Both domains in the working format, ready for the core's ``_fit``.

    ``X`` holds the training images of both domains, interleaved, in the
    layout the estimator's ``channels=`` reads; ``domains`` their domain
    values; ``holdout`` a raw ``(k, C, S, S)`` batch of held-out images per
    domain (in ``values`` order); ``formats`` each domain's native format.
    """

    X: torch.Tensor
    domains: np.ndarray
    values: np.ndarray
    holdout: list[torch.Tensor]
    formats: list[dict]


#: A pixel is content when it differs from the domain's background by more than this
#: fraction of the value range (:func:`content_box`).
CONTENT_THRESHOLD = 0.25
#: :func:`content_box` looks at most this many images of a domain (evenly spaced).
CONTENT_SAMPLE = 4096


def content_box(raw: torch.Tensor, scale: float) -> tuple[list[int], list[float]]:
    """A domain's content square ``[top, left, side]`` and its background colour in [0, 1].

    The background is the median of the images' outermost pixels, per channel;
    a pixel is content where a channel differs from the background's by more than
    ``CONTENT_THRESHOLD`` of the value range. Each image's content has a
    bounding box; the domain's square has the side of the longer of the
    median box's sides, centred on the median box (moved inside the image
    where it would cross the edge). Images without content are skipped; a
    domain without any gets the whole (centre-cropped square) image. At most
    ``CONTENT_SAMPLE`` images, evenly spaced, are looked at.

    Parameters
    ----------
    raw : Tensor of shape (n, C, H, W)
        A domain's images at their native size, uint8 or float.
    scale : float
        The images' value range (255 for uint8).

    Returns
    -------
    box : list of int
        ``[top, left, side]`` of the square.
    background : list of float
        The background value of each channel, in [0, 1].

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(5, 1, 28, 28, dtype=torch.uint8)
    >>> x[:, :, 4:24, 6:20] = 255
    >>> content_box(x, 255.0)
    ([4, 3, 20], [0.0])
    """
    n, _, height, width = raw.shape
    x = raw[_sample_rows(n)].float() / scale
    background = _ring_median(x)
    colour = torch.tensor(background, dtype=x.dtype).view(1, -1, 1, 1)
    ink = (x - colour).abs().amax(1) > CONTENT_THRESHOLD
    side_full = min(height, width)
    full = [(height - side_full) // 2, (width - side_full) // 2, side_full]
    has = ink.flatten(1).any(1)
    if not bool(has.any()):
        return full, background
    ink = ink[has]
    extents = []
    for hits, size in ((ink.any(2), height), (ink.any(1), width)):  # rows, then columns
        first = hits.float().argmax(1)
        last = size - 1 - hits.flip(1).float().argmax(1)
        extents.append((float(first.float().median()), float(last.float().median())))
    (top, bottom), (left, right) = extents
    side = int(min(side_full, max(bottom - top + 1, right - left + 1)))
    start = []
    for (lo, hi), size in zip(extents, (height, width)):
        centre = (lo + hi + 1) / 2
        start.append(int(min(max(0, round(centre - side / 2)), size - side)))
    return [start[0], start[1], side], background


def _sample_rows(n: int) -> torch.Tensor:
    return torch.as_tensor(np.unique(np.linspace(0, n - 1, min(n, CONTENT_SAMPLE)).astype(int)))


def background_colour(raw: torch.Tensor, scale: float) -> list[float]:
    """The median of the images' outermost pixels, per channel, in [0, 1] (at most
    ``CONTENT_SAMPLE`` images, evenly spaced)."""
    return _ring_median(raw[_sample_rows(len(raw))].float() / scale)


def _ring_median(x: torch.Tensor) -> list[float]:
    ring = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1)
    return [float(c.median()) for c in ring.transpose(0, 1).flatten(1)]


#: :func:`deskew` shears this many images at a time.
DESKEW_BATCH = 4096
#: :func:`deskew` shears by at most this many columns per row (45 degrees): ink spread
#: over a few nearly flat rows has a tiny mu02 and would otherwise be sheared off the frame.
MAX_SHEAR = 1.0


def deskew(raw: torch.Tensor, scale: float, background: list[float]) -> torch.Tensor:
    """Each image sheared along its rows, about its ink's centre of mass, so that the
    ink's second-order moment mu11 is zero: moment deskewing.

    The ink is each pixel's mean absolute difference from ``background`` over
    the channels. Image ``i`` is sheared by ``alpha_i = mu11 / mu02`` (the
    slope of x on y of its ink, at most ``MAX_SHEAR`` either way), pixels
    leaving the frame are dropped and pixels entering it take the background
    (bilinear sampling). An image without ink is left as it is.

    Parameters
    ----------
    raw : Tensor of shape (n, C, H, W)
        Images, uint8 or float.
    scale : float
        Their value range (255 for uint8).
    background : list of float
        The background of each channel, in [0, 1] (:func:`background_colour`).

    Returns
    -------
    Tensor
        The deskewed images, shaped, typed and scaled like ``raw``.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    >>> for row in range(1, 8):                    # a stroke leaning right going down
    ...     x[0, 0, row, row] = 255
    >>> upright = deskew(x, 255.0, [0.0])
    >>> upright[0, 0, 1:8].argmax(1).tolist()      # one column: the centre's
    [4, 4, 4, 4, 4, 4, 4]
    """
    out = torch.empty_like(raw)
    for start in range(0, len(raw), DESKEW_BATCH):
        out[start:start + DESKEW_BATCH] = _deskew_block(raw[start:start + DESKEW_BATCH], scale,
                                                        background)
    return out


def _deskew_block(raw: torch.Tensor, scale: float, background: list[float]) -> torch.Tensor:
    x = raw.float() / scale
    n, _, height, width = x.shape
    colour = torch.tensor(background, dtype=x.dtype).view(1, -1, 1, 1)
    ink = (x - colour).abs().mean(1)
    ys = torch.arange(height, dtype=x.dtype).view(1, height, 1)
    xs = torch.arange(width, dtype=x.dtype).view(1, 1, width)
    mass = ink.sum((1, 2))
    safe = mass.clamp_min(1e-12)
    cy = (ink * ys).sum((1, 2)) / safe
    cx = (ink * xs).sum((1, 2)) / safe
    dy = ys - cy.view(-1, 1, 1)
    mu11 = (ink * dy * (xs - cx.view(-1, 1, 1))).sum((1, 2)) / safe
    mu02 = (ink * dy ** 2).sum((1, 2)) / safe
    alpha = torch.where((mass > 0) & (mu02 > 1e-12), mu11 / mu02.clamp_min(1e-12),
                        torch.zeros_like(mu11)).clamp(-MAX_SHEAR, MAX_SHEAR)
    # Output pixel (y, x) samples the input at (y, x + alpha (y - cy)); in grid_sample's
    # coordinates (-1..1 over the pixel centres, align_corners=True):
    slope = alpha * (height - 1) / max(width - 1, 1)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 1] = slope
    theta[:, 0, 2] = -slope * (2 * cy / max(height - 1, 1) - 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    sheared = F.grid_sample(x - colour, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True) + colour
    sheared = sheared * scale
    if raw.dtype == torch.uint8:
        return sheared.round().clamp(0, 255).to(torch.uint8)
    return sheared.to(raw.dtype)


def crop_box(raw: torch.Tensor, box: list[int]) -> torch.Tensor:
    """``raw`` (n, C, H, W) cropped to ``box`` ``[top, left, side]``."""
    top, left, side = box
    return raw[..., top:top + side, left:left + side]


def resolve_domains(owner: str, y: Any, domains: Any, n: int) -> np.ndarray:
    """The domain of each sample: ``domains``, or else ``y`` when it has exactly two values."""
    if domains is None:
        if y is None:
            raise InputError(f"{owner}.fit needs domains= (one value per image, naming its "
                             "domain: exactly two distinct values)")
        values = np.asarray(y)
        distinct = np.unique(values)
        if len(distinct) != 2:
            raise InputError(f"{owner} translates between two domains, and y has "
                             f"{len(distinct)} distinct values ({_preview(distinct)}); pass the "
                             "domain of each image as domains= (fit(X, domains=...)); y is read "
                             "as the domains only when it has exactly two values")
        domains = values
    values = np.asarray(domains)
    if values.ndim != 1 or len(values) != n:
        raise InputError(f"X and domains have different lengths: n_samples={n}, "
                         f"len(domains)={len(values) if values.ndim == 1 else values.shape}")
    distinct = np.unique(values)
    if len(distinct) == 1:
        raise InputError(f"{owner} needs images of two domains, and domains= has one value "
                         f"({distinct[0]!r}); add the images of the other domain, with their "
                         "domain value, to X and domains=")
    if len(distinct) > 2:
        raise InputError(f"{owner} translates between exactly two domains, and domains= has "
                         f"{len(distinct)} values ({_preview(distinct)}); fit one {owner} per "
                         "pair of domains")
    return values


def _preview(values: np.ndarray) -> str:
    shown = ", ".join(repr(v) for v in values[:5].tolist())
    return shown + (", ..." if len(values) > 5 else "")


def n_samples(X: Any) -> int:
    """How many images ``X`` holds (arrays, tensors, lists of arrays or of paths)."""
    if isinstance(X, (str, os.PathLike)):
        raise InputError("X is a folder; CycleGAN needs one domain value per image: pass "
                         "the list of image paths (featurekit.data.inputs.list_image_files) "
                         "with domains=, e.g. the sub-folder of each path")
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, torch.Tensor):
        raise InputError("CycleGAN takes images as an array, a tensor or a list (of arrays "
                         "or of image paths), not a torch Dataset")
    if not hasattr(X, "__len__"):
        X = np.asarray(X)
    return len(X)


def take(X: Any, rows: np.ndarray) -> Any:
    """The images of ``X`` at ``rows`` (sorted, as h5py needs)."""
    if isinstance(X, (list, tuple)):
        return [X[i] for i in rows]
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(rows, dtype=torch.long)]
    if not isinstance(X, np.ndarray) and not hasattr(X, "shape"):
        return np.asarray(X)[rows]
    return X[rows]


def native_format(X: Any, channels: str, image_shape: Any, owner: str, value: Any) -> dict:
    """How the images of one domain were given: ``shape`` of a sample as given,
    ``sample_shape`` as (C, H, W), and the ``layout`` of its channel axis."""
    if isinstance(X, list) and X and isinstance(X[0], (str, os.PathLike)):
        from PIL import Image

        try:
            with Image.open(X[0]) as img:
                grey = img.mode in ("1", "L", "I;16", "I", "F", "LA")
                w, h = img.size
        except Exception as exc:
            raise InputError(f"cannot read image file {os.fspath(X[0])!r}: {exc}") from None
        shape = (h, w) if grey else (h, w, 3)
        return {"shape": list(shape), "sample_shape": [1 if grey else 3, h, w],
                "layout": "none" if grey else "last"}
    if isinstance(X, list):
        shapes = {np.shape(a) for a in X}
        if len(shapes) > 1:
            raise InputError(f"the images of domain {value!r} have {len(shapes)} different "
                             f"shapes (e.g. {sorted(shapes)[:2]}); {owner}.translate gives each "
                             "domain's images back at its own size, so give the images of one "
                             "domain one size")
        shape = shapes.pop()
    else:
        shape = tuple(X.shape[1:])
    if image_shape is not None and len(shape) == 1:
        image = tuple(image_shape)
        layout = inputs._layout((1, *image), channels)
    else:
        image = shape
        layout = inputs._layout((1, *shape), channels)
    if layout == "none":
        chw = (1, *image)
    elif layout == "last":
        chw = (image[2], image[0], image[1])
    else:
        chw = image
    return {"shape": [int(s) for s in shape], "sample_shape": [int(s) for s in chw],
            "layout": layout}


def raw_images(X: Any, est: Any, size: Any = "working") -> tuple[torch.Tensor, float]:
    """One domain as a raw (n, C, H, W) batch at the working size (or at ``size``:
    None keeps the native size), and its scale."""
    size = est.image_size if size == "working" else size
    source = inputs.image_source(X, channels=est.channels, image_size=size,
                                 scale=est.scale, image_shape=est.image_shape, min_samples=0)
    batch = torch.cat(list(source.batches(np.arange(source.n), 4096)))
    return batch, source.scale


def framed_images(X: Any, est: Any, fmt: dict) -> tuple[torch.Tensor, float]:
    """One domain's images at their native size, cropped to its content square ``fmt["box"]``
    (the input of ``translate`` with ``framing="content"``), and their scale."""
    raw, scale = raw_images(X, est, size=None)
    if tuple(raw.shape[1:]) != tuple(fmt["sample_shape"]):
        raise InputError(
            f"with framing='content', translate needs images of the source domain at its "
            f"native shape {tuple(fmt['sample_shape'])} (C, H, W), as given to fit; got "
            f"{tuple(raw.shape[1:])}")
    if fmt.get("deskewed", False):
        raw = deskew(raw, scale, fmt["deskew_background"])
    return crop_box(raw, fmt["box"]), scale


def prepare(est: Any, X: Any, y: Any, domains: Any, seed: int) -> DomainData:
    """Check and split ``X`` into two domains (see the module docstring)."""
    owner = type(est).__name__
    n = n_samples(X)
    if n == 0:
        raise InputError(f"X is empty (n_samples=0); {owner}.fit needs images of two domains")
    if n < 2:
        raise InputError(f"{owner}.fit needs images of two domains; got n_samples={n}")
    labels = resolve_domains(owner, y, domains, n)
    values, codes = np.unique(labels, return_inverse=True)
    names = values.tolist()  # plain Python values for messages (no np.float64(...))
    parts = [take(X, np.flatnonzero(codes == d)) for d in range(2)]
    formats = [native_format(p, est.channels, est.image_shape, owner, v)
               for p, v in zip(parts, names)]
    sizes = [tuple(f["sample_shape"][1:]) for f in formats]
    if sizes[0] != sizes[1] and est.image_size is None:
        raise InputError(
            f"the two domains have images of different sizes: {names[0]!r} {sizes[0]} and "
            f"{names[1]!r} {sizes[1]} (H, W); pass image_size=<int>: both are resized to "
            f"it to train (shorter side, then centre crop), and translate() gives each "
            "domain's images back at its own size")
    if est.deskew and est.framing != "content":
        raise ParameterError(
            f"{owner}(deskew=True) deskews each domain before cropping it to its content "
            f"square; it needs framing='content' (got framing={est.framing!r})")
    if est.framing == "content":
        raws, scales = _frame_domains(est, parts, formats, names)
    else:
        raws, scales = zip(*(raw_images(p, est) for p in parts))
    raws = _common_format(list(raws), list(scales))
    rng = np.random.default_rng(seed)
    train, holdout = [], []
    for d, raw in enumerate(raws):
        k = _n_holdout(len(raw), est.validation_fraction)
        order = rng.permutation(len(raw))
        holdout.append(raw[torch.as_tensor(np.sort(order[:k]), dtype=torch.long)])
        train.append(raw[torch.as_tensor(np.sort(order[k:]), dtype=torch.long)])
        if len(train[-1]) < est.batch_size:
            held = f" ({len(raw)} minus {k} held out by validation_fraction=" \
                   f"{est.validation_fraction})" if k else ""
            raise InputError(
                f"domain {names[d]!r} has {len(train[-1])} training images{held}, fewer than "
                f"batch_size={est.batch_size}; every step trains on images of both domains: "
                f"give that domain at least {est.batch_size} images, or lower batch_size=")
    order = rng.permutation(len(train[0]) + len(train[1]))
    X_train = torch.cat(train)[torch.as_tensor(order, dtype=torch.long)]
    labels_train = np.repeat(values, [len(t) for t in train])[order]
    if est.channels == "last":  # hand the core what its channels= reads
        X_train = X_train.permute(0, 2, 3, 1)
    return DomainData(X_train.contiguous(), labels_train, values, holdout, formats)


def _frame_domains(est: Any, parts: list, formats: list[dict], names: list) -> tuple:
    """Each domain cropped to its content square, then resized to ``image_size``; the
    squares and backgrounds go into ``formats``."""
    if est.image_size is None:
        raise InputError("framing='content' crops each domain to its own content square, "
                         "so the squares need a common working size: pass image_size=<int>")
    if est.image_shape is not None:
        raise InputError("framing='content' needs the images as (n, H, W) or (n, H, W, C) "
                         "arrays or image files, not flat rows with image_shape=")
    raws, scales = [], []
    for part, fmt, name in zip(parts, formats, names):
        raw, scale = raw_images(part, est, size=None)
        if len(raw) == 0:
            raise InputError(f"domain {name!r} has no images")
        if est.deskew:  # translate deskews with the same background
            fmt["deskew_background"] = background_colour(raw, scale)
            raw = deskew(raw, scale, fmt["deskew_background"])
        box, background = content_box(raw, scale)
        fmt["box"], fmt["background"], fmt["deskewed"] = box, background, bool(est.deskew)
        raws.append(inputs.resize_shorter_and_crop(crop_box(raw, box), est.image_size))
        scales.append(scale)
    return raws, scales


def paste(images: np.ndarray, fmt: dict, scale: float) -> np.ndarray:
    """Translations at a domain's content-square size (in its layout) put into images of
    its native shape, on its background (``framing="content"``)."""
    top, left, side = fmt["box"]
    shape = tuple(fmt["shape"])
    fill = np.asarray(fmt["background"], dtype=np.float64) * scale  # per channel
    if images.dtype == np.uint8:
        fill = np.round(fill)
    out = np.empty((len(images), *shape), dtype=images.dtype)
    if fmt["layout"] == "first":
        out[:] = fill.reshape(-1, 1, 1)
        out[:, :, top:top + side, left:left + side] = images
    else:  # "none" (n, H, W) or "last" (n, H, W, C)
        out[:] = fill if fmt["layout"] == "last" else fill.mean()
        out[:, top:top + side, left:left + side] = images
    return out


def _n_holdout(n: int, fraction: float) -> int:
    if fraction <= 0:
        return 0
    return int(min(n - 1, max(1, round(fraction * n))))


def _common_format(raws: list[torch.Tensor], scales: list[float]) -> list[torch.Tensor]:
    channels = max(r.shape[1] for r in raws)
    raws = [r.expand(-1, channels, -1, -1) if r.shape[1] != channels else r for r in raws]
    if scales[0] != scales[1]:
        return [r.float() / s for r, s in zip(raws, scales)]
    if raws[0].dtype != raws[1].dtype:
        return [r.float() for r in raws]
    return raws
