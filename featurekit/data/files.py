"""Read a dataset named on the command line: an ``.npz``, a folder of images, or a list.

:func:`load_data` turns a path into a :class:`LoadedData` whose ``X`` any
featurekit estimator accepts: arrays from an ``.npz``, or image file paths
(decoded lazily, batch by batch, by :class:`featurekit.data.inputs.FileSource`).

- ``data.npz``: array ``x`` (or ``X``) and optional labels ``y``. A scalar
  ``sample_rate`` marks the rows as audio waveforms; then an optional
  ``length`` (or ``lengths``) array gives each row's valid samples (the rest
  is padding), and ``X`` is a :class:`featurekit.data.Waveforms`.
- ``images/``: every image file below the folder. When all of them sit in
  sub-folders, each file's label is the name of its top sub-folder
  (torchvision's ``ImageFolder`` convention: ``images/cat/1.png``).
- ``files.txt``: one image path per line, relative to the list's folder,
  optionally followed by a tab or a space and a label; blank lines and lines
  starting with ``#`` are skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.data.inputs import list_image_files
from featurekit.exceptions import InputError

__all__ = ["LoadedData", "load_data"]

ACCEPTED = ("an .npz file with an array 'x' (and optional labels 'y'), a folder of images "
            "(class sub-folders give labels), or a .txt list of image paths "
            "(optionally '<path><TAB><label>')")


@dataclass
class LoadedData:
    """A dataset read by :func:`load_data`.

    Attributes
    ----------
    X : ndarray, Waveforms or list of str
        The samples: an array (rows or images), audio clips, or image file paths.
    y : ndarray of shape (n_samples,) or None
        Labels (class names as strings for folders and lists), or None.
    keys : list of str or None
        A name per sample (the file path as the user wrote it) for files; None for arrays.
    description : str
        One line saying what was read, for messages and provenance.
    modality : str or None
        ``"image"`` for files, ``"audio"`` for an ``.npz`` with a ``sample_rate``,
        None for arrays whose kind the estimator infers from their shape.
    sample_rate : int or None
        The audio sampling rate in Hz, when given.
    """

    X: Any
    y: np.ndarray | None
    keys: list[str] | None
    description: str
    modality: str | None = None
    sample_rate: int | None = None

    def __len__(self) -> int:
        return len(self.X)

    @property
    def is_files(self) -> bool:
        """Whether ``X`` holds file paths rather than arrays."""
        return isinstance(self.X, list)


def load_data(path: str | os.PathLike, *, labels: bool = True) -> LoadedData:
    """Read the dataset at ``path`` (see the module docstring for the kinds).

    Parameters
    ----------
    path : str or path-like
        An ``.npz`` file, a folder of images, or a ``.txt`` list of image paths.
    labels : bool, default=True
        Read the labels too; with False, ``y`` is None.

    Returns
    -------
    LoadedData

    Raises
    ------
    InputError
        If ``path`` is missing, of another kind, or its content is unusable.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, x=np.zeros((4, 3)), y=[0, 1, 0, 1])
    >>> data = load_data(path)
    >>> data.X.shape, data.y.tolist(), data.keys
    ((4, 3), [0, 1, 0, 1], None)
    """
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, labels)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz(path, labels)
    if path.is_file() and path.suffix.lower() == ".txt":
        return _load_list(path, labels)
    problem = "does not exist" if not path.exists() else "is not a kind featurekit reads"
    raise InputError(f"{str(path)!r} {problem}; give {ACCEPTED}")


def _load_npz(path: Path, labels: bool) -> LoadedData:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            arrays = {n: npz[n] for n in names
                      if n in ("x", "X", "y", "sample_rate", "length", "lengths")}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {str(path)!r} as an .npz of plain arrays: {exc}") from None
    x_name = "x" if "x" in arrays else "X" if "X" in arrays else None
    if x_name is None:
        raise InputError(f"{str(path)!r} has no array named 'x' or 'X' (it has "
                         f"{', '.join(sorted(names)) or 'no arrays'})")
    X = arrays[x_name]
    y = arrays.get("y") if labels else None
    rate = int(arrays["sample_rate"]) if "sample_rate" in arrays else None
    if X.ndim == 0 or len(X) == 0:
        raise InputError(f"{str(path)!r}: array '{x_name}' holds no samples (shape {X.shape})")
    if y is not None and (y.ndim != 1 or len(y) != len(X)):
        raise InputError(f"{str(path)!r}: 'y' must have one label per row of '{x_name}'; got "
                         f"shape {y.shape} for {len(X)} rows")
    what = f"{path.name}: {x_name} {X.shape} {X.dtype}"
    if y is not None:
        what += ", with labels y"
    if rate is not None:
        what += f", audio at {rate} Hz"
    if rate is not None:
        from featurekit.data.inputs import Waveforms

        lengths = arrays.get("length", arrays.get("lengths"))
        if lengths is not None:
            what += ", with clip lengths"
        X = Waveforms(X, lengths=lengths, sample_rate=rate)
    return LoadedData(X, y, None, what, modality="audio" if rate is not None else None,
                      sample_rate=rate)


def _load_folder(folder: Path, labels: bool) -> LoadedData:
    paths = list_image_files(folder)
    keys = [os.path.relpath(p, folder) for p in paths]
    parts = [Path(k).parts for k in keys]
    y = None
    if labels and all(len(p) > 1 for p in parts):
        y = np.asarray([p[0] for p in parts])
    what = f"folder {folder.name or str(folder)}/: {len(paths)} images"
    if y is not None:
        what += f" in {len(np.unique(y))} class folders"
    return LoadedData(paths, y, keys, what, modality="image")


def _load_list(path: Path, labels: bool) -> LoadedData:
    base = path.parent
    keys, names = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file list {str(path)!r}: {exc}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, label = _split_line(line, base)
        if not (base / key).is_file():
            raise InputError(f"{path.name}, line {number}: no file {key!r} (relative paths are "
                             f"read from {str(base)!r})")
        keys.append(key)
        names.append(label)
    if not keys:
        raise InputError(f"the file list {str(path)!r} names no files")
    given = [label is not None for label in names]
    if any(given) and not all(given):
        raise InputError(f"{path.name}: {given.count(True)} lines have a label and "
                         f"{given.count(False)} do not; label every line or none")
    y = np.asarray(names) if labels and all(given) else None
    what = f"list {path.name}: {len(keys)} images" + (", with labels" if y is not None else "")
    return LoadedData([str(base / k) for k in keys], y, keys, what, modality="image")


def _split_line(line: str, base: Path) -> tuple[str, str | None]:
    """``path``, ``path<TAB>label`` or ``path label`` (a path with spaces needs the tab)."""
    if "\t" in line:
        key, label = line.split("\t", 1)
        return key.strip(), label.strip() or None
    if (base / line).is_file() or len(line.split()) == 1:
        return line, None
    key, label = line.rsplit(None, 1)
    return key, label
