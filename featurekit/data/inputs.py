"""Input adapters: turn what a user passes to ``fit``/``transform`` into batches.

Every adapter yields raw batches: images as ``(B, C, H, W)`` uint8 (or float32
in [0, 1]) tensors, tabular rows as ``(B, F)`` float32. Scaling, resizing and
normalization happen later, batched on the device (``featurekit.preprocess``).

Accepted images: numpy arrays or torch tensors of shape (N, H, W),
(N, H, W, C) or (N, C, H, W) (``channels=`` decides, ``"auto"`` refuses to
guess when both ends could be channels); lists of arrays (of different sizes
only with ``image_size=``); lists of image file paths (decoded in DataLoader
workers); a torch ``Dataset``; an h5py dataset (read lazily, batch by batch).

Resizing rule (``image_size=S``): the shorter side is scaled to S with
antialiased bilinear interpolation, then the centre S x S is cropped, as
torchvision's evaluation transforms do; aspect ratios are kept.

Audio (methods listing ``"audio"`` in ``modalities``, with the estimator
parameters ``modality`` and ``sample_rate``) is accepted as:

- a 2-D array or tensor (N, T), float in [-1, 1] or int16 PCM (scaled by
  1/32768 on the device), only with ``modality="audio"``: a 2-D array is
  otherwise a table;
- a list of 1-D arrays of any lengths (``modality="auto"`` takes a list of
  1-D arrays as audio);
- :class:`Waveforms`: an (N, T) array plus the valid samples per row
  (``lengths``) and optionally its ``sample_rate``, which must equal the
  estimator's (there is no resampling). It indexes like an array, so sklearn's
  splitters, ``cross_val_score`` and Pipelines can slice it.

Other dtypes (int32, uint8, ...), NaN or infinity, float values outside
[-1, 1], empty clips and arrays of another rank are refused with an
:class:`~featurekit.exceptions.InputError`. Audio batches are
:class:`featurekit.audio.AudioBatch` objects: ``wave`` (B, T) padded with
zeros to the longest clip *of the batch* (int16 stays int16 until the
preprocessor), and ``lengths`` (B,) int64. Clips shorter than the method's
STFT frame are refused by :class:`featurekit.audio.LogMel`, which knows the
frame size.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from featurekit.audio import AudioBatch
from featurekit.exceptions import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class Source:
    """A data set of ``n`` samples that yields raw batches in a given order."""

    n: int
    sample_shape: tuple[int, ...]
    modality: str
    scale: float

    def batches(self, order: np.ndarray, batch_size: int,
                num_workers: int = 0) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError


class TensorSource(Source):
    """Samples held in memory (numpy or torch); batches are gathered by index."""

    def __init__(self, data: torch.Tensor, modality: str, scale: float, raw: Any = None):
        super().__init__(len(data), tuple(data.shape[1:]), modality, scale)
        self.data = data
        self._raw = raw

    def batches(self, order, batch_size, num_workers=0):
        if len(order) and np.array_equal(order, np.arange(order[0], order[0] + len(order))):
            for start in range(order[0], order[0] + len(order), batch_size):  # views, no copy
                yield self.data[start:min(start + batch_size, order[0] + len(order))]
            return
        order_t = torch.as_tensor(order, dtype=torch.long)
        for start in range(0, len(order_t), batch_size):
            yield self.data.index_select(0, order_t[start:start + batch_size])

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{tuple(self.data.shape)}{self.data.dtype}".encode())
        raw = self._raw if self._raw is not None else self.data
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        h.update(np.ascontiguousarray(raw).view(np.uint8).data)
        return h.hexdigest()


class LazyArraySource(Source):
    """An array-like read batch by batch (h5py dataset, memmap): never loaded whole."""

    def __init__(self, data: Any, layout: str, modality: str, scale: float,
                 sample_shape: tuple[int, ...]):
        super().__init__(len(data), sample_shape, modality, scale)
        self.data, self.layout = data, layout

    def batches(self, order, batch_size, num_workers=0):
        for start in range(0, len(order), batch_size):
            idx = np.asarray(order[start:start + batch_size])
            if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and (np.diff(idx) == 1).all():
                block = np.asarray(self.data[idx[0]:idx[-1] + 1])  # a run: one cheap read
            else:
                sorted_idx, inverse = np.unique(idx, return_inverse=True)  # h5py: increasing
                block = np.asarray(self.data[sorted_idx])[inverse]
            if block.dtype.kind == "f" and not np.isfinite(block).all():
                raise InputError(f"X contains NaN or infinity (rows {idx.min()}..{idx.max()}); "
                                 "clean or impute the data first")
            yield _to_nchw(torch.from_numpy(np.ascontiguousarray(block)), self.layout)

    def fingerprint(self) -> str:
        name = getattr(self.data, "name", "")
        file = getattr(getattr(self.data, "file", None), "filename", "")
        stat = os.stat(file) if file and os.path.exists(file) else None
        key = f"{file}:{name}:{self.data.shape}:{stat and (stat.st_size, stat.st_mtime_ns)}"
        return hashlib.sha256(key.encode()).hexdigest()


class _ImageFiles(torch.utils.data.Dataset):
    """Decodes one image file per item (runs inside DataLoader workers)."""

    def __init__(self, paths: Sequence[str], mode: str, image_size: int | None):
        self.paths, self.mode, self.image_size = list(paths), mode, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        path = self.paths[i]
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert(self.mode), dtype=np.uint8)
        except Exception as exc:
            raise InputError(f"cannot read image file {path!r}: {exc}") from None
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        if self.image_size is not None:
            t = resize_shorter_and_crop(t.unsqueeze(0), self.image_size)[0]
        return t


def _collate_same_size(items: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in items}
    if len(shapes) > 1:
        raise InputError(f"images have different sizes {sorted(shapes)[:3]}...; "
                         "pass image_size=<int> to resize them (shorter side, then centre crop)")
    return torch.stack(items)


class FileSource(Source):
    """Image files decoded in DataLoader workers (spawn/forkserver, never fork)."""

    def __init__(self, paths: Sequence[str], mode: str, image_size: int | None,
                 sample_shape: tuple[int, ...]):
        super().__init__(len(paths), sample_shape, "image", 255.0)
        self.files = _ImageFiles(paths, mode, image_size)

    def batches(self, order, batch_size, num_workers=0):
        batches = [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
        ctx = None
        if num_workers > 0:
            import multiprocessing as mp

            ctx = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        loader = torch.utils.data.DataLoader(
            self.files, batch_sampler=batches, num_workers=num_workers,
            multiprocessing_context=ctx, collate_fn=_collate_same_size,
            generator=torch.Generator())  # never draw worker seeds from the global RNG
        yield from loader

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.files.paths:
            st = os.stat(p)
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()


class DatasetSource(Source):
    """A torch ``Dataset`` whose items are images (or ``(image, ...)`` tuples)."""

    def __init__(self, dataset: Any, sample_shape: tuple[int, ...], scale: float):
        super().__init__(len(dataset), sample_shape, "image", scale)
        self.dataset = dataset

    def batches(self, order, batch_size, num_workers=0):
        batches = [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=batches,
                                             num_workers=num_workers,
                                             collate_fn=_collate_dataset_items,
                                             generator=torch.Generator())
        yield from loader

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{type(self.dataset).__qualname__}:{self.n}".encode()).hexdigest()


def _item_to_chw(item: Any) -> torch.Tensor:
    if isinstance(item, (tuple, list)):
        item = item[0]
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        item = np.asarray(item)
        t = torch.from_numpy(item.copy())
        return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    t = torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)
    if t.ndim == 2:
        return t.unsqueeze(0)
    if t.ndim == 3 and t.shape[0] not in (1, 3) and t.shape[-1] in (1, 3):
        return t.permute(2, 0, 1)
    return t


def _collate_dataset_items(items: list[Any]) -> torch.Tensor:
    return _collate_same_size([_item_to_chw(it) for it in items])


# -- helpers -----------------------------------------------------------------

def resize_shorter_and_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (B, C, H, W) batch so its shorter side is ``size``, then centre-crop."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    dtype = x.dtype
    y = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", antialias=True,
                      align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    y = y[..., top:top + size, left:left + size]
    if dtype == torch.uint8:
        y = y.round().clamp_(0, 255).to(torch.uint8)
    return y


def _to_nchw(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "none":
        return t.unsqueeze(1)
    if layout == "last":
        return t.permute(0, 3, 1, 2)
    return t


def _layout(shape: tuple[int, ...], channels: str) -> str:
    """Where the channel axis of an image array of ``shape`` is."""
    if len(shape) == 3:
        return "none"
    if len(shape) != 4:
        raise InputError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W); got shape "
                         f"{shape}. For tabular data pass a 2-D array")
    if channels in ("first", "last"):
        c = shape[1] if channels == "first" else shape[3]
        if c not in (1, 3):
            raise InputError(f"images must have 1 or 3 channels; got {c} on the {channels} axis "
                             f"of shape {shape} (drop alpha channels; check channels=)")
        return channels
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first and last:
        raise InputError(f"cannot tell where the channels are in shape {shape}: both axis 1 and "
                         "axis 3 could be; pass channels='first' or channels='last'")
    if not (first or last):
        raise InputError(f"images must have 1 or 3 channels on axis 1 or 3; got shape {shape}. "
                         "Drop alpha channels, or pass channels='first'/'last'")
    return "first" if first else "last"


def _check_not_empty(shape: tuple[int, ...], layout: str) -> None:
    """Refuse images with no pixels (a zero height or width)."""
    height, width = shape[1:3] if layout in ("none", "last") else shape[2:4]
    if height == 0 or width == 0:
        raise InputError(f"images of {height}x{width} px have no pixels (array shape {shape}); "
                         "pass images of at least 1x1 px")


def _scale_of(x: Any, scale: Any) -> float:
    """The divisor that maps the array's values into [0, 1], checking the range."""
    dtype = np.dtype(x.dtype) if not isinstance(x, torch.Tensor) else x.dtype
    if scale == "auto":
        if dtype in (np.uint8, torch.uint8):
            return 255.0
        is_float = (dtype.is_floating_point if isinstance(dtype, torch.dtype)
                    else dtype.kind == "f")
        if not is_float:
            raise InputError(f"images of dtype {dtype} are ambiguous: pass uint8 (0-255), float in "
                             "[0, 1], or scale=<the maximum value> (e.g. scale=65535 for 16-bit)")
        scale = 1.0
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError("X contains NaN or infinity; clean or impute the images first")
    if lo < 0 or hi > float(scale):
        raise InputError(f"image values must lie in [0, {scale:g}]; got [{lo:g}, {hi:g}]. Pass "
                         "uint8 0-255, float in [0, 1], or scale=<the maximum value>")
    return float(scale)


def _check_n(n: int) -> None:
    if n == 0:
        raise InputError("X is empty (n_samples=0); fit needs at least 2 samples")
    if n < 2:
        raise InputError(f"featurekit needs at least 2 samples; got n_samples={n}")


def image_source(X: Any, *, channels: str = "auto", image_size: int | None = None,
                 scale: Any = "auto", image_shape: tuple[int, ...] | None = None,
                 min_samples: int = 2) -> Source:
    """Wrap image input ``X`` in a :class:`Source` (no copy for in-memory arrays)."""
    if isinstance(X, (str, os.PathLike)):
        X = list_image_files(X)
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, torch.Tensor):
        return _dataset_source(X, scale, min_samples)
    if isinstance(X, (list, tuple)):
        if len(X) and all(isinstance(p, (str, os.PathLike)) for p in X):
            return _file_source([os.fspath(p) for p in X], image_size, min_samples)
        return _list_source(X, channels, image_size, scale, min_samples)
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    if image_shape is not None and len(X.shape) == 2:
        X = X.reshape((X.shape[0], *image_shape))
    layout = _layout(tuple(X.shape), channels)
    if min_samples:
        _check_n(X.shape[0])
    _check_not_empty(tuple(X.shape), layout)
    if not isinstance(X, (np.ndarray, torch.Tensor)):  # h5py, zarr, memmap-like: stay lazy
        probe = np.asarray(X[: min(len(X), 256)])
        s = _scale_of(probe, scale)
        sample = _to_nchw(torch.from_numpy(probe[:1]), layout).shape[1:]
        src = LazyArraySource(X, layout, "image", s, tuple(sample))
        if image_size is not None:
            raise InputError("image_size= resizing of lazily read arrays is not supported; "
                             "the images of an array already share one size")
        return src
    s = _scale_of(X, scale)
    if isinstance(X, np.ndarray) and any(stride < 0 for stride in X.strides):
        X = np.ascontiguousarray(X)  # torch cannot view negative strides (flipped arrays)
    t = torch.from_numpy(X) if isinstance(X, np.ndarray) else X.detach().cpu()
    if t.dtype not in (torch.uint8, torch.float32):
        t = t.to(torch.float32)
    t = _to_nchw(t, layout)
    if image_size is not None:
        t = resize_shorter_and_crop(t, image_size)
    return TensorSource(t, "image", s, raw=X)


def _list_source(X, channels, image_size, scale, min_samples) -> Source:
    if min_samples:
        _check_n(len(X))
    arrays = [np.asarray(a) for a in X]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1 and image_size is None:
        raise InputError(f"images have different sizes ({len(shapes)} distinct shapes, e.g. "
                         f"{sorted(shapes)[:2]}); pass image_size=<int> to resize them "
                         "(shorter side, then centre crop)")
    if len(shapes) == 1:
        return image_source(np.stack(arrays), channels=channels, image_size=image_size,
                            scale=scale, min_samples=min_samples)
    tensors = []
    for a in arrays:
        layout = _layout((1, *a.shape), channels)
        _check_not_empty((1, *a.shape), layout)
        t = _to_nchw(torch.from_numpy(np.ascontiguousarray(a))[None], layout)
        tensors.append(resize_shorter_and_crop(t.float() / _scale_of(a, scale), image_size))
    n_channels = {t.shape[1] for t in tensors}
    if len(n_channels) > 1:
        raise InputError(f"images mix channel counts {sorted(n_channels)}; convert them all to "
                         "grey or all to RGB")
    return TensorSource(torch.cat(tensors), "image", 1.0)


def _file_source(paths: list[str], image_size, min_samples) -> Source:
    from PIL import Image

    if min_samples:
        _check_n(len(paths))
    try:
        with Image.open(paths[0]) as img:
            mode = "L" if img.mode in ("1", "L", "I;16", "I", "F", "LA") else "RGB"
            w, h = img.size
    except Exception as exc:
        raise InputError(f"cannot read image file {paths[0]!r}: {exc}") from None
    c = 1 if mode == "L" else 3
    shape = (c, image_size, image_size) if image_size else (c, h, w)
    return FileSource(paths, mode, image_size, shape)


def _dataset_source(ds, scale, min_samples) -> Source:
    if min_samples:
        _check_n(len(ds))
    first = _item_to_chw(ds[0])
    s = _scale_of(first, scale) if scale != "auto" or first.dtype != torch.uint8 else 255.0
    return DatasetSource(ds, tuple(first.shape), s)


def list_image_files(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` (recursive, sorted), or an error naming the folder."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError(f"{folder!r} is not a folder of images")
    paths = sorted(
        os.path.join(root, f) for root, _, files in os.walk(folder) for f in files
        if f.lower().endswith(IMAGE_SUFFIXES)
    )
    if not paths:
        raise InputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found under {folder!r}")
    return paths


def tabular_source(X: np.ndarray) -> Source:
    """Wrap a validated float32 (n, F) array."""
    t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    return TensorSource(t, "tabular", 1.0, raw=X)


def is_lazy_rows(X: Any) -> bool:
    """Whether ``X`` is a table on disk, read batch by batch: an h5py dataset or a
    :class:`featurekit.store.FeatureStore` (neither can exist before its module is imported)."""
    h5py, store = sys.modules.get("h5py"), sys.modules.get("featurekit.store")
    return ((h5py is not None and isinstance(X, h5py.Dataset))
            or (store is not None and isinstance(X, store.FeatureStore)))


def lazy_tabular_source(X: Any, *, n_features: int | None = None,
                        min_samples: int = 0) -> Source:
    """Wrap a 2-D h5py dataset or a FeatureStore (its features) without reading it."""
    store = sys.modules.get("featurekit.store")
    data = X.features if store is not None and isinstance(X, store.FeatureStore) else X
    if data is None:
        raise InputError(f"X is an empty feature store ({X.path})")
    shape = tuple(data.shape)
    if len(shape) != 2:
        raise InputError(f"tabular X must be 2-D; got an HDF5 dataset of shape {shape}")
    if np.dtype(data.dtype).kind not in "fiu":
        raise InputError(f"X must hold numbers; got an HDF5 dataset of dtype {data.dtype}")
    if min_samples:
        _check_n(shape[0])
    elif shape[0] == 0:
        raise InputError("X is empty (n_samples=0)")
    if n_features is not None and shape[1] != n_features:
        raise InputError(f"X has {shape[1]} features, but the estimator is expecting "
                         f"{n_features} features as input")
    return LazyArraySource(data, "first", "tabular", 1.0, (shape[1],))


def column_stats(source: Source, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-column mean and standard deviation, and the largest absolute value (at least 1),
    of a tabular source, in one pass of float64 batches (Chan et al.'s pairwise update)."""
    count, mean, m2, peak = 0, 0.0, 0.0, 1.0
    for start in range(0, source.n, batch_size):
        order = np.arange(start, min(start + batch_size, source.n))
        block = next(source.batches(order, len(order))).numpy().astype(np.float64)
        size, block_mean = len(block), block.mean(axis=0)
        delta = block_mean - mean
        total = count + size
        mean = mean + delta * size / total
        m2 = m2 + ((block - block_mean) ** 2).sum(axis=0) + delta ** 2 * count * size / total
        count, peak = total, max(peak, float(np.abs(block).max()))
    return np.asarray(mean), np.sqrt(m2 / count), peak


def is_tabular(X: Any, image_shape: Any) -> bool:
    """2-D array-likes are tabular unless ``image_shape`` says they are flattened images."""
    if image_shape is not None or isinstance(X, (list, tuple, str, os.PathLike)):
        if isinstance(X, (list, tuple)) and X and not isinstance(X[0], (str, os.PathLike)):
            return np.ndim(X[0]) == 1 and image_shape is None
        return False
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, torch.Tensor):
        return False
    shape = getattr(X, "shape", None)
    if shape is None:
        shape = np.asarray(X).shape
    return len(shape) == 2


# -- audio ---------------------------------------------------------------------

class Waveforms:
    """Audio clips in an (N, T) array, each valid up to its own length.

    Parameters
    ----------
    data : ndarray or Tensor of shape (n_samples, n_times)
        float in [-1, 1] or int16 PCM; each row is a clip, padded at the end.
    lengths : array-like of shape (n_samples,) or None, default=None
        Valid samples per row (clipped to ``n_times``; samples beyond are
        ignored); ``None``: every row is ``n_times`` samples long.
    sample_rate : int or None, default=None
        The clips' rate in Hz; when given, an estimator whose ``sample_rate``
        differs refuses them.

    Indexing with an int gives that clip's valid samples (a 1-D array); with
    a slice, an index array or a boolean mask, a :class:`Waveforms` of those
    rows, so sklearn's splitters and ``cross_val_score`` can split it.

    Examples
    --------
    >>> import numpy as np
    >>> w = Waveforms(np.zeros((3, 8000), np.int16), lengths=[8000, 3000, 20000],
    ...               sample_rate=8000)
    >>> len(w), w.lengths.tolist(), w[1].shape, w[[0, 2]].lengths.tolist()
    (3, [8000, 3000, 8000], (3000,), [8000, 8000])
    """

    def __init__(self, data: Any, lengths: Any = None, sample_rate: int | None = None):
        shape = tuple(getattr(data, "shape", np.shape(data)))
        if len(shape) != 2:
            raise InputError(f"Waveforms needs an (n_samples, n_times) array; got shape {shape}. "
                             "Pass a list of 1-D arrays for clips of different lengths")
        if not hasattr(data, "shape"):
            data = np.asarray(data)
        if lengths is None:
            lengths = np.full(shape[0], shape[1], dtype=np.int64)
        lengths = np.asarray(lengths)
        if lengths.shape != (shape[0],) or (lengths.size and lengths.dtype.kind not in "iu"):
            raise InputError(f"Waveforms lengths must be {shape[0]} integers (one per row); got "
                             f"an array of shape {lengths.shape} and dtype {lengths.dtype}")
        if lengths.size and lengths.min() < 0:
            raise InputError(f"Waveforms lengths must be >= 0; got {int(lengths.min())}")
        if sample_rate is not None and (not isinstance(sample_rate, (int, np.integer))
                                        or sample_rate <= 0):
            raise InputError(f"Waveforms sample_rate must be a positive int (Hz) or None; got "
                             f"{sample_rate!r}")
        self.data = data
        self.lengths = np.minimum(lengths.astype(np.int64), shape[1])
        self.sample_rate = None if sample_rate is None else int(sample_rate)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple) and len(key) == 2 and key[1] is Ellipsis:
            key = key[0]  # sklearn's _safe_indexing asks for X[key, ...]
        if isinstance(key, (int, np.integer)):
            return self.data[key][: int(self.lengths[key])]
        if isinstance(key, tuple):
            raise InputError("Waveforms index rows only (an int, slice, index array or mask)")
        rows = key if isinstance(key, slice) else np.asarray(key)
        data_rows = torch.as_tensor(rows) if isinstance(self.data, torch.Tensor) and \
            not isinstance(rows, slice) else rows
        return Waveforms(self.data[data_rows], self.lengths[rows], self.sample_rate)

    def __repr__(self) -> str:
        rate = "" if self.sample_rate is None else f", sample_rate={self.sample_rate}"
        return f"Waveforms(n_samples={len(self)}, n_times={self.shape[1]}{rate})"


class AudioSource(Source):
    """Audio clips in memory, padded per batch to the batch's longest clip.

    ``data`` is either an (N, T) tensor whose row ``i`` is valid up to
    ``lengths[i]``, or (``offsets`` given) all clips end to end in one 1-D
    tensor, clip ``i`` starting at ``offsets[i]``. Batches are gathered with
    one indexing operation each, never a loop over clips.
    """

    def __init__(self, data: torch.Tensor, lengths: torch.Tensor,
                 offsets: torch.Tensor | None = None, sample_rate: int | None = None):
        scale = 32768.0 if data.dtype == torch.int16 else 1.0
        super().__init__(len(lengths), (int(lengths.max()),), "audio", scale)
        self.data, self.lengths, self.offsets = data, lengths, offsets
        self.sample_rate = sample_rate

    def batches(self, order, batch_size, num_workers=0):
        order_t = torch.as_tensor(np.asarray(order), dtype=torch.long)
        for start in range(0, len(order_t), batch_size):
            idx = order_t[start:start + batch_size]
            lengths = self.lengths.index_select(0, idx)
            longest = int(lengths.max()) if len(idx) else 0
            valid = torch.arange(longest)[None, :] < lengths[:, None]
            if self.offsets is None:
                wave = self.data[:, :longest].index_select(0, idx)
            else:
                pos = self.offsets.index_select(0, idx)[:, None] + torch.arange(longest)[None, :]
                wave = self.data[torch.where(valid, pos, 0)]
            yield AudioBatch(wave.masked_fill_(~valid, 0), lengths, idx)

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"audio:{tuple(self.data.shape)}{self.data.dtype}".encode())
        h.update(self.lengths.numpy().tobytes())
        h.update(np.ascontiguousarray(self.data.numpy()).view(np.uint8).data)
        return h.hexdigest()


_AUDIO_DTYPES = "int16 PCM or float in [-1, 1] (float16, float32 or float64)"


def is_audio_list(X: Any) -> bool:
    """Whether ``X`` is a non-empty list or tuple of 1-D arrays (clips)."""
    return (isinstance(X, (list, tuple)) and len(X) > 0
            and not isinstance(X[0], (str, os.PathLike))
            and all(np.ndim(a) == 1 for a in X))


def _audio_array(a: Any, what: str) -> np.ndarray:
    """``a`` as a numpy int16 or float32 array, its dtype and values checked."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.dtype == np.int16:
        return a
    if a.dtype.kind != "f":
        raise InputError(f"{what} has dtype {a.dtype}, which is not accepted for audio: pass "
                         f"{_AUDIO_DTYPES}. Convert other PCM first (int32: x / 2**31, uint8: "
                         "(x - 128) / 128)")
    a = a.astype(np.float32, copy=False)
    finite = np.isfinite(a)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0]) if a.ndim == 2 else None
        where = f" (row {row})" if row is not None else ""
        raise InputError(f"{what} contains NaN or infinity{where}; clean the audio first")
    peak = float(np.abs(a).max(initial=0.0))
    if peak > 1.0:
        raise InputError(f"float audio must lie in [-1, 1]; {what} reaches {peak:g}. Divide "
                         "int16 PCM by 32768 (or pass the int16 array itself)")
    return a


def audio_source(X: Any, *, sample_rate: int | None = None, min_samples: int = 2) -> Source:
    """Wrap audio input ``X`` in an :class:`AudioSource` (see the module docstring).

    Parameters
    ----------
    X : ndarray or Tensor of shape (n_samples, n_times), list of 1-D arrays, or Waveforms
        The clips.
    sample_rate : int or None, default=None
        The estimator's rate in Hz; a :class:`Waveforms` carrying another one is refused.
    min_samples : int, default=2
        Fewest clips accepted (0: any non-empty input).
    """
    lengths = None
    if isinstance(X, Waveforms):
        if X.sample_rate is not None and sample_rate is not None and X.sample_rate != sample_rate:
            raise InputError(f"X holds audio at {X.sample_rate} Hz, but the estimator's "
                             f"sample_rate is {sample_rate} Hz; resample the audio, or set "
                             f"sample_rate={X.sample_rate} before fit (featurekit never "
                             "resamples)")
        X, lengths = X.data, X.lengths
    if isinstance(X, (list, tuple)):
        return _clip_list_source(X, sample_rate, min_samples)
    shape = tuple(getattr(X, "shape", np.shape(X)))
    if len(shape) != 2:
        raise InputError(f"audio must be an (n_samples, n_times) array, a list of 1-D arrays or "
                         f"Waveforms; got an array of shape {shape}. Mix multichannel audio "
                         "down to mono first")
    if min_samples:
        _check_n(shape[0])
    elif shape[0] == 0:
        raise InputError("X is empty (n_samples=0)")
    if shape[1] == 0:
        raise InputError(f"X has clips of 0 samples (shape {shape}); clips need samples")
    data = torch.from_numpy(np.ascontiguousarray(_audio_array(X, "X")))
    lengths = (torch.full((shape[0],), shape[1], dtype=torch.long) if lengths is None
               else torch.from_numpy(np.asarray(lengths, dtype=np.int64)))
    _check_clip_lengths(lengths)
    return AudioSource(data, lengths, sample_rate=sample_rate)


def _clip_list_source(clips: Sequence[Any], sample_rate: int | None,
                      min_samples: int) -> Source:
    if min_samples:
        _check_n(len(clips))
    elif not len(clips):
        raise InputError("X is empty (n_samples=0)")
    arrays = []
    for i, clip in enumerate(clips):
        if np.ndim(clip) != 1:
            raise InputError(f"clip {i} of X has shape {np.shape(clip)}; a list of clips must "
                             "hold 1-D arrays (mix multichannel audio down to mono)")
        arrays.append(_audio_array(clip, f"clip {i} of X"))
    if any(a.dtype != np.int16 for a in arrays):  # mixed int16 and float: all to float
        arrays = [a / np.float32(32768) if a.dtype == np.int16 else a for a in arrays]
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    _check_clip_lengths(lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    return AudioSource(torch.from_numpy(np.concatenate(arrays)), lengths, offsets, sample_rate)


def _check_clip_lengths(lengths: torch.Tensor) -> None:
    empty = (lengths == 0).nonzero()
    if len(empty):
        raise InputError(f"clip {int(empty[0, 0])} of X has 0 samples; every clip needs samples")
