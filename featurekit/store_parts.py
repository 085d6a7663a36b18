"""The parted layout of a feature store: immutable parts, and an index over them.

A store written in parts (by :func:`featurekit.store.extract`) is::

    feats.h5                 the index: root attributes ``featurekit_format``,
                             ``featurekit_metadata`` (JSON) and
                             ``featurekit_parts`` (JSON: part size, expected
                             rows, the committed parts), and virtual datasets
                             features/ids/labels/keys mapped onto the parts
    feats.h5.parts/
        .lock                held by the processes that write the store
        .index.lock          held by a shard while it rewrites feats.h5
        .shard-1-of-4.lock   held by the process that writes shard 1 of 4
        part-00000.h5        a complete one-file store; its metadata says
        part-00001.h5        which rows it holds and what made them
        part-00002.h5.tmp    a part being written (never read)

Every file is written under a temporary name, synced, and renamed into place
(then the folder is synced), so each is either absent or complete. The index
lists committed parts only, and parts are never modified, so a reader of
``feats.h5`` sees whole rows even while an extraction is adding parts.
Source paths in the index are relative to its folder (HDF5 resolves them
there), so the store can be moved as long as the two stay together.

Sharded extraction (``extract(..., shard=(rank, world_size))``, or
``featurekit extract ... --nproc N`` / ``--shard I/N``): N processes, on one
machine or on several sharing the folder, write one store. Part ``k`` is
written by shard ``k % world_size``, so no part is written twice. A plain
writer holds ``.lock`` exclusively for its whole run; shards hold it shared
(so the two kinds exclude each other), each its own ``.shard-I-of-N.lock``
(a second process for the same shard, or a live shard of another
``world_size``, is refused), and ``.index.lock`` only while they add their
committed parts to the index: it lists every part committed by any shard,
so the last shard to commit leaves it complete. The locks are ``flock``
locks: a shared file system must support them (local disks, NFSv4, Lustre
mounted with ``flock``), and a killed process releases its locks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
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

#: A process's place in a sharded extraction: (rank, world_size).
Shard = tuple[int, int]

#: Root attribute of an index file: the layout, as JSON.
INDEX_ATTR = "featurekit_parts"

_PART = re.compile(r"^part-(\d+)\.h5$")
_PART_TMP = re.compile(r"^part-(\d+)\.h5\.tmp$")
_LOCK = ".lock"
_INDEX_LOCK = ".index.lock"
#: Times a shard opens and locks its lock file while finishing shards keep unlinking it.
_LOCK_ATTEMPTS = 10
_SHARD_LOCK = re.compile(r"^\.shard-(\d+)-of-(\d+)\.lock$")
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
def locked(path: str | os.PathLike[str], shard: Shard | None = None) -> Iterator[None]:
    """Hold the store's write lock, creating its parts folder.

    Without ``shard``, the lock is exclusive: any other writer is refused.
    With ``shard=(rank, world_size)``, it is shared with the other shards of
    the same ``world_size``, and refuses a plain writer, a second process for
    the same shard, and a live shard of another ``world_size`` (its parts
    would overlap). Use :func:`index_locked` around each index rewrite then.
    """
    folder = parts_dir(path)
    created = not folder.is_dir()
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise store_error(exc, f"create the parts folder {folder}") from exc
    held, own = [fd], None
    try:
        if fcntl is not None:
            held_by = "Another process" if shard is None else "Another process (not a shard)"
            _lock_or_refuse(fd, fcntl.LOCK_EX if shard is None else fcntl.LOCK_SH, (
                f"{held_by} is writing the feature store {path} (it holds {folder / _LOCK}); "
                f"wait for it to finish, or write to another path."))
        if fcntl is not None and shard is not None:
            rank, world = shard
            lock = folder / f".shard-{rank}-of-{world}.lock"
            for _ in range(_LOCK_ATTEMPTS):
                try:
                    held.append(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
                except OSError as exc:
                    raise store_error(exc, f"create the lock file {lock}") from exc
                _lock_or_refuse(held[-1], fcntl.LOCK_EX, (
                    f"Another process is writing shard {rank}/{world} of the feature store "
                    f"{path} (it holds {lock}); give each process its own shard."))
                if _is_open_as(held[-1], lock):
                    break
                # A shard finishing unlinked the file after this process opened it: the
                # lock just taken is on a file no other process can find. Take the new one.
                os.close(held.pop())
            else:
                raise InputError(f"The lock file {lock} of the feature store {path} keeps "
                                 "being removed by other processes; run one process per shard.")
            own = lock
            # Both sides lock before they look, so of two shards started together with
            # different world sizes at least one sees the other.
            others = sorted({int(m.group(2)) for m in map(_SHARD_LOCK.match, os.listdir(folder))
                             if m and int(m.group(2)) != world and _held(folder / m.group(0))})
            if others:
                raise InputError(
                    f"Shards of {' and '.join(map(str, others))} processes are writing the "
                    f"feature store {path}, whose parts shard {rank}/{world} would write "
                    f"too; use the same number of shards as they do, or wait for them.")
    except BaseException:
        created = False  # refused: what is there belongs to the other writer
        for held_fd in held:
            os.close(held_fd)
        raise
    try:
        yield
    finally:
        if own is not None:
            with contextlib.suppress(OSError):
                own.unlink()
        if created and shard is not None:
            try:  # shards share the folder: only the last one out may remove it
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                created = False
        for held_fd in reversed(held):
            os.close(held_fd)  # closing releases the lock
        if created and all(_is_lock(e.name) for e in os.scandir(folder)):
            remove_parts(path)  # nothing was written: leave no trace


@contextlib.contextmanager
def index_locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of the index of ``path`` (waiting for it), as a shard must while it
    reads and rewrites the index. It is held for milliseconds, so waiting is short."""
    if fcntl is None:
        yield
        return
    lock = parts_dir(path) / _INDEX_LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise store_error(exc, f"create the lock file {lock}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _is_open_as(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _lock_or_refuse(fd: int, kind: int, message: str) -> None:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(message) from None


def _held(file: Path) -> bool:
    """Whether a live process holds the lock file ``file``."""
    try:
        fd = os.open(file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _is_lock(name: str) -> bool:
    return name in (_LOCK, _INDEX_LOCK) or _SHARD_LOCK.match(name) is not None


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


def scan(path: str | os.PathLike[str], *, clean: bool | Callable[[int], bool] = False,
         known: Mapping[int, Part] | None = None) -> list[Part]:
    """The committed parts of the store ``path``, by first row.

    With ``clean`` (only under :func:`locked`), parts left half-written by an
    interrupted writer are deleted: all of them, or those whose number
    ``clean(k)`` accepts (a shard's own). Parts in ``known`` (by number) are
    taken as they are, without opening them again.
    """
    folder = parts_dir(path)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if (tmp := _PART_TMP.match(entry.name)) and clean:
            if clean is True or clean(int(tmp.group(1))):
                os.unlink(entry.path)
        elif match := _PART.match(entry.name):
            part = (known or {}).get(int(match.group(1)))
            found.append(part if part is not None and part.path.name == entry.name
                         else read_part(Path(entry.path)))
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
        if _PART.match(entry.name) or _PART_TMP.match(entry.name) or _is_lock(entry.name):
            os.unlink(entry.path)
    with contextlib.suppress(OSError):  # a folder that still holds the user's files stays
        folder.rmdir()
