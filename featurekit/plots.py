"""Image grids and figures, drawn with matplotlib's Agg renderer (the ``plots`` extra).

:func:`image_grid` draws rows of images, such as each query beside its
nearest neighbours or each cluster's samples nearest its center, and saves
the grid atomically. Figures are built as ``matplotlib.figure.Figure``
objects, never through ``pyplot``, so drawing one neither switches the
backend of a notebook that imports featurekit nor keeps figures open.

matplotlib is imported only when a figure is drawn: featurekit itself does
not need it.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.exceptions import InputError
from featurekit.store import commit_file, store_error

__all__ = ["figure", "image_grid", "read_thumbnail", "require_matplotlib", "save_figure"]

INSTALL_HINT = 'pip install "featurekit[plots]"'


def require_matplotlib() -> None:
    """Raise an ``ImportError`` that says how to install matplotlib, if it is missing."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise ImportError(f"drawing figures needs matplotlib: {INSTALL_HINT}") from None


def figure(**kwargs: Any) -> Any:
    """A new ``matplotlib.figure.Figure`` (keyword arguments go to its constructor)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save ``fig`` to ``path`` atomically: the old file or the new one, never half of one.

    The format follows the file's suffix (``.png`` when it has none);
    keyword arguments go to ``Figure.savefig``. A refused write (a full or
    read-only disk) raises :class:`~featurekit.exceptions.StoreError`.
    """
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InputError(f"cannot save a figure as {path.name}: matplotlib writes "
                         f"{', '.join(sorted(supported))}; use a .png file name.")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fig.savefig(tmp, format=fmt, **kwargs)
        commit_file(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise store_error(exc, f"save the figure {path}") from exc
        raise
    return path


def image_grid(
    rows: Sequence[Sequence[Any]],
    path: str | os.PathLike[str],
    *,
    titles: Sequence[Sequence[str | None]] | None = None,
    row_labels: Sequence[str] | None = None,
    cell_inches: float = 1.1,
) -> Path:
    """Draw rows of images as a grid and save it (atomically) to ``path``.

    Parameters
    ----------
    rows : sequence of sequences of images
        One sequence per grid row. An image is an ndarray of shape (H, W)
        (grey) or (H, W, 3|4), uint8 in 0-255 or float in [0, 1]; None
        leaves its cell blank. Rows may differ in length.
    path : str or path-like
        The file to write; its suffix picks the format (``.png``).
    titles : sequence of sequences of str, optional
        A short title per cell, shaped like ``rows`` (None for no title).
    row_labels : sequence of str, optional
        A label at the left of each row.
    cell_inches : float, default=1.1
        Width and height of one cell.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> digits = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> image_grid([[digits[0], digits[1]], [digits[2], None]], path,
    ...            titles=[["query", "0.98"], ["query", None]]).name
    'grid.png'
    """
    rows = [list(row) for row in rows]
    n_rows, n_cols = len(rows), max((len(row) for row in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise InputError("image_grid needs at least one image.")
    if titles is not None and len(titles) != n_rows:
        raise InputError(f"titles has {len(titles)} rows but there are {n_rows} rows of images.")
    if row_labels is not None and len(row_labels) != n_rows:
        raise InputError(f"row_labels has {len(row_labels)} entries for {n_rows} rows.")
    title_inches = 0.22 if titles is not None else 0.05
    label_inches = 0.8 if row_labels is not None else 0.05
    width, height = cell_inches * n_cols + label_inches, (cell_inches + title_inches) * n_rows
    fig = figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            image = row[c] if c < len(row) else None
            if image is not None:
                _show(ax, image)
            title = titles[r][c] if titles is not None and c < len(titles[r]) else None
            if title:
                ax.set_title(title, fontsize=7, pad=2)
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right",
                                  va="center")
    fig.subplots_adjust(left=label_inches / width, right=1 - 0.02 / width, bottom=0.02 / height,
                        top=1 - title_inches / height, wspace=0.04,
                        hspace=title_inches / cell_inches)
    return save_figure(fig, path)


def read_thumbnail(path: str | os.PathLike[str], size: int = 96) -> np.ndarray | None:
    """An image file as a small uint8 array (longer side at most ``size``), or None.

    None when the file is missing or is not an image Pillow can read, so a
    grid can leave that cell blank.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.thumbnail((size, size))
            grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
            return np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _show(ax: Any, image: Any) -> None:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # (C, H, W) as torch keeps images
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise InputError(f"an image must have shape (H, W) or (H, W, C); got {array.shape}.")
    peak = 255 if array.dtype == np.uint8 else 1.0
    if array.ndim == 2:
        ax.imshow(array, cmap="gray", vmin=0, vmax=peak, interpolation="nearest")
    else:
        ax.imshow(array if array.dtype == np.uint8 else np.clip(array, 0, 1),
                  interpolation="nearest")
