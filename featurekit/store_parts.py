"""The parted layout of a feature store: immutable parts, and an index over them.

A store written in parts (by :func:`featurekit.store.extract`) is::

    feats.h5                 the index: root attributes ``featurekit_format``,
                             ``featurekit_metadata`` (JSON) and
                             ``featurekit_parts`` (JSON: part size, expected
                             rows, the committed parts), and virtual datasets
                             features/ids/labels/keys mapped onto the parts
    feats.h5.parts/
        .lock                held by the one process that writes the store
        part-00000.h5        a complete one-file store; its metadata says
        part-00001.h5        which rows it holds and what made them
        part-00002.h5.tmp    a part being written (never read)

Every file is written under a temporary name, synced, and renamed into place
(then the folder is synced), so each is either absent or complete. The index
lists committed parts only, and parts are never modified, so a reader of
``feats.h5`` sees whole rows even while an extraction is adding parts.
Source paths in the index are relative to its folder (HDF5 resolves them
there), so the store can be moved as long as the two stay together.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featurekit.exceptions import InputError
from featurekit.store import (
    _FORMAT_ATTR,
    _FORMAT_VERSION,
    _METADATA_ATTR,
    FeatureStore,
    commit_file,
    metadata_json,
    store_error,
)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per store is up to the user
    fcntl = None

#: Root attribute of an index file: the layout, as JSON.
INDEX_ATTR = "featurekit_parts"

_PART = re.compile(r"^part-(\d+)\.h5$")
_PART_TMP = re.compile(r"^part-(\d+)\.h5\.tmp$")
_LOCK = ".lock"
# What a virtual dataset shows where a part is missing: never a plausible row.
_FILL = {"features": np.nan, "ids": -1, "labels": -1}


@dataclass(frozen=True)
class Part:
    """A committed part: rows ``[start, stop)`` of the store, in ``path``."""

    index: int
    start: int
    stop: int
    path: Path
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def rows(self) -> int:
        return self.stop - self.start


def parts_dir(path: str | os.PathLike[str]) -> Path:
    """The folder of ``path``'s parts: ``<path>.parts`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def part_path(path: str | os.PathLike[str], index: int) -> Path:
    """Where part ``index`` of the store ``path`` is committed."""
    return parts_dir(path) / f"part-{index:05d}.h5"


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the store's write lock, creating its parts folder; refuse a second writer."""
    folder = parts_dir(path)
    created = not folder.is_dir()
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise store_error(exc, f"create the parts folder {folder}") from exc
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                created = False
                raise InputError(
                    f"Another process is writing the feature store {path} (it holds "
                    f"{folder / _LOCK}); wait for it to finish, or write to another path."
                ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock
        if created and [e.name for e in os.scandir(folder)] == [_LOCK]:
            remove_parts(path)  # nothing was written: leave no trace


def read_part(path: Path) -> Part:
    """The committed part at ``path``, checked to hold the rows its metadata names."""
    match = _PART.match(path.name)
    try:
        with FeatureStore(path) as store:
            info, rows = store.metadata, len(store)
        start, stop = int(info["start"]), int(info["stop"])
    except (InputError, KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"The part {path} is damaged ({exc}); remove it and run the extraction again "
            f"to redo it."
        ) from None
    if match is None or rows != stop - start:
        raise InputError(
            f"The part {path} is damaged (it holds {rows} rows, not rows {start}..{stop}); "
            f"remove it and run the extraction again to redo it."
        )
    return Part(int(match.group(1)), start, stop, path, info)


def scan(path: str | os.PathLike[str], *, clean: bool = False) -> list[Part]:
    """The committed parts of the store ``path``, by first row.

    With ``clean=True`` (only under :func:`locked`), parts left half-written
    by an interrupted writer are deleted.
    """
    folder = parts_dir(path)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _PART_TMP.match(entry.name):
            if clean:
                os.unlink(entry.path)
        elif _PART.match(entry.name):
            found.append(read_part(Path(entry.path)))
    return sorted(found, key=lambda p: p.start)


def write_part(
    path: str | os.PathLike[str],
    index: int,
    start: int,
    stop: int,
    blocks: Iterable[Mapping[str, Any]],
    *,
    info: Mapping[str, Any],
    dtype: Any,
    compression: str | None,
) -> Part:
    """Write rows ``[start, stop)`` from ``blocks`` (keyword arguments of
    :meth:`FeatureStore.append`) as part ``index``, and commit it.

    The part is written as ``part-N.h5.tmp``, synced and renamed; on any
    error the temporary file is removed and nothing else changes.
    """
    final = part_path(path, index)
    tmp = final.with_name(final.name + ".tmp")
    try:
        with FeatureStore(tmp, "w", compression=compression,
                          max_chunk_rows=stop - start) as store:
            for block in blocks:
                store.append(dtype=dtype, **block)
            if len(store) != stop - start:
                raise InputError(f"part {index} should hold rows {start}..{stop} but got "
                                 f"{len(store)} rows")
            store.set_metadata({**info, "start": start, "stop": stop})
        commit_file(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Part(index, start, stop, final, dict(info))


def write_index(
    path: str | os.PathLike[str],
    parts: list[Part],
    metadata: Mapping[str, Any],
    *,
    part_size: int | None,
    n_samples: int | None,
) -> None:
    """Replace the index ``path`` with one over ``parts`` (in order), atomically.

    ``n_samples`` is the number of rows the store will hold when complete.
    """
    path = Path(path)
    folder = parts_dir(path)
    parts = sorted(parts, key=lambda p: p.start)
    layout = {
        "dir": folder.name, "part_size": part_size, "n_samples": n_samples,
        "parts": [{"name": p.path.name, "start": p.start, "stop": p.stop} for p in parts],
    }
    text = metadata_json(metadata)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as index:
            index.attrs[_FORMAT_ATTR] = _FORMAT_VERSION
            index.attrs[_METADATA_ATTR] = text
            index.attrs[INDEX_ATTR] = json.dumps(layout)
            if parts:
                _map_parts(index, folder.name, parts)
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _map_parts(index: h5py.File, folder: str, parts: list[Part]) -> None:
    """Create the virtual datasets of ``index``, the parts' rows one after another."""
    with h5py.File(parts[0].path, "r") as first:
        columns = {name: (first[name].dtype, first[name].shape[1:])
                   for name in ("features", "ids", "labels", "keys") if name in first}
    total = sum(p.rows for p in parts)
    for name, (dtype, tail) in columns.items():
        layout = h5py.VirtualLayout(shape=(total, *tail), dtype=dtype)
        offset = 0
        for part in parts:
            layout[offset:offset + part.rows] = h5py.VirtualSource(
                f"{folder}/{part.path.name}", name, shape=(part.rows, *tail))
            offset += part.rows
        index.create_virtual_dataset(name, layout, fillvalue=_FILL.get(name))


def read_index(path: Path, file: h5py.File, *, check_parts: bool = True
               ) -> dict[str, Any] | None:
    """The layout of the parted store open in ``file``, None for a one-file store.

    With ``check_parts``, refuses an index whose parts are missing: HDF5
    would silently show fill values in their place.
    """
    raw = file.attrs.get(INDEX_ATTR)
    if raw is None:
        return None
    try:
        layout = json.loads(raw)
        listed = [(str(p["name"]), int(p["stop"]) - int(p["start"])) for p in layout["parts"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is a damaged feature store: its parts index cannot be read "
                         f"({exc}).") from None
    folder = parts_dir(path)
    missing = [name for name, _ in listed if check_parts and not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"The feature store {path} lacks {len(missing)} of its {len(listed)} parts "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}) in {folder}. "
            f"Keep {path.name} and {folder.name}/ together, or run the extraction again to "
            f"redo the missing parts."
        )
    rows = sum(n for _, n in listed)
    if listed and ("features" not in file or file["features"].shape[0] != rows):
        raise InputError(f"{path} is a damaged feature store: its index maps "
                         f"{file['features'].shape[0] if 'features' in file else 0} rows "
                         f"where its parts hold {rows}.")
    return layout


def listed_parts(path: str | os.PathLike[str], layout: Mapping[str, Any]) -> list[Part]:
    """The parts an index lists, without opening them."""
    folder = parts_dir(path)
    out = []
    for entry in layout["parts"]:
        match = _PART.match(entry["name"])
        out.append(Part(int(match.group(1)) if match else -1, int(entry["start"]),
                        int(entry["stop"]), folder / entry["name"]))
    return out


def remove_parts(path: str | os.PathLike[str]) -> None:
    """Delete the parts of the store ``path`` (files of featurekit's names only)."""
    folder = parts_dir(path)
    for entry in os.scandir(folder):
        if _PART.match(entry.name) or _PART_TMP.match(entry.name) or entry.name == _LOCK:
            os.unlink(entry.path)
    with contextlib.suppress(OSError):  # a folder that still holds the user's files stays
        folder.rmdir()
