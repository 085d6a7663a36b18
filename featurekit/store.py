"""The HDF5 feature store: features, ids, labels and keys, appendable, read lazily.

A store is one of two layouts, read alike through :class:`FeatureStore`:

- **one file** (``write_store``, ``FeatureStore(path, "w")``): chunked,
  resizable datasets in ``path``, appended to in place;
- **parts** (written by :func:`featurekit.store.extract`, the streaming
  extraction)::

      feats.h5                  the index: metadata, and virtual datasets
                                features/ids/labels/keys mapped onto the parts
      feats.h5.parts/
          part-00000.h5         rows [0, part_size), a complete one-file store
          part-00001.h5         rows [part_size, 2 * part_size)
          ...

  HDF5 files are not crash-safe while they are written, so each part is
  written as ``part-N.h5.tmp``, flushed, synced and only then renamed to
  ``part-N.h5``; committed parts never change again. The index is rewritten
  beside ``feats.h5`` and renamed onto it after each committed part, and
  lists only committed parts, so a reader never sees a half-written row and a
  crash loses at most the part being written (see :mod:`featurekit.store_parts`).
  Several processes may write one such store, each its share of the parts
  (``extract(..., shard=(rank, world_size))``, ``featurekit extract --nproc N``;
  see :mod:`featurekit.extraction`). Move or copy ``feats.h5`` and
  ``feats.h5.parts/`` together.

Metadata lives in one JSON string attribute, never in a pickle, so a store
can be opened safely whatever its origin. Features are stored uncompressed by
default: features of deep networks barely compress (``"lzf"`` saves little on
dense float32 rows and costs write speed, see ``benchmarks/bench_store.py``),
and an uncompressed chunk serves one random row (a kNN lookup, a shuffled
training batch) without decompressing the whole chunk. ``float16`` halves
the size when that matters.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from featurekit.exceptions import InputError, StoreError

__all__ = ["FeatureStore", "StoreError", "write_store"]  # and extract, imported lazily

# Root attribute marking a featurekit store; its value is the format version.
_FORMAT_ATTR = "featurekit_format"
_FORMAT_VERSION = 1
_METADATA_ATTR = "featurekit_metadata"

_MODES = ("r", "a", "w")
_COMPRESSIONS = (None, "lzf", "gzip")
_FEATURE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_COLUMNS = ("features", "ids", "labels", "keys")

# h5py recommends chunks of roughly 10 KiB to 1 MiB; half a MiB reads well
# row-wise and column-wise without wasting much space in a small store.
_CHUNK_BYTES = 512 * 1024
_MAX_CHUNK_BYTES = 1024 * 1024


class FeatureStore:
    """An HDF5 store of feature rows with their ids and optional labels and keys.

    It reads like a 2-D float array of shape (n_samples, n_features):
    ``len(store)``, ``store[i]``, ``store[10:20]``, ``store[[3, 1]]`` and
    ``np.asarray(store)`` read features (only the rows asked for), so a store
    can be given to ``fit``/``transform`` of a tabular featurekit method, or
    streamed into a FAISS index with :meth:`iter_batches`, without loading it.

    Datasets are created on the first :meth:`append`:

    - ``features``: float32 or float16, shape (n_samples, n_features);
    - ``ids``: int64, shape (n_samples,);
    - ``labels`` (optional): int64, shape (n_samples,);
    - ``keys`` (optional): UTF-8 strings, shape (n_samples,), such as file names.

    All are chunked and resizable along the first axis. Each process should
    open the file itself; an open h5py file does not survive a fork.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file (for a store written by :func:`extract`, its index file).
    mode : {"r", "a", "w"}, default="r"
        ``"r"`` reads an existing store; ``"a"`` reads and appends, creating
        the file if it is missing; ``"w"`` creates a one-file store, replacing
        any store at ``path`` (with its parts).
    compression : {None, "lzf", "gzip"}, default=None
        Compression of datasets this store creates. ``"lzf"`` is fast,
        ``"gzip"`` smaller; features rarely compress well, hence no default.
    max_chunk_rows : int, optional
        At most this many rows per chunk; by default as many as fill about
        512 KiB. Give the final row count for a small store that never grows.

    Attributes
    ----------
    path : Path
        The file.
    mode : str
        The mode it was opened in.

    Raises
    ------
    InputError
        If the file is missing in mode ``"r"``, is not HDF5, cannot be read,
        is an HDF5 file that featurekit did not write, or lacks one of its parts.
    StoreError
        If the file cannot be created (a read-only or full disk).

    See Also
    --------
    write_store : Write a complete store atomically.
    extract : Stream a fitted estimator's features into a store, resumably.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "feats.h5")
    >>> with FeatureStore(path, mode="w") as store:
    ...     store.append(np.ones((3, 4)), labels=[0, 1, 0])
    ...     store.append(np.zeros((2, 4)), labels=[1, 1])
    ...     store.set_metadata({"method": "simclr"})
    >>> with FeatureStore(path) as store:
    ...     len(store), store.shape, store.ids[:].tolist(), store.metadata
    (5, (5, 4), [0, 1, 2, 3, 4], {'method': 'simclr'})
    >>> with FeatureStore(path) as store:
    ...     store[0].tolist(), store[[4, 0], :2].tolist(), store.labels[[0, 3]].tolist()
    ([1.0, 1.0, 1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [0, 1])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "r",
        *,
        compression: str | None = None,
        max_chunk_rows: int | None = None,
    ) -> None:
        if mode not in _MODES:
            raise InputError(f"mode must be one of 'r', 'a', 'w'; got {mode!r}.")
        if compression not in _COMPRESSIONS:
            raise InputError(
                f"compression must be None, 'lzf' or 'gzip'; got {compression!r}."
            )
        if max_chunk_rows is not None and (
            not isinstance(max_chunk_rows, (int, np.integer)) or max_chunk_rows < 1
        ):
            raise InputError(f"max_chunk_rows must be a positive int; got {max_chunk_rows!r}.")
        self.path = Path(path)
        self.mode = mode
        self.compression = compression
        self.max_chunk_rows = max_chunk_rows
        self._file: h5py.File | None = None
        self._parts: dict[str, Any] | None = None  # the index of a parted store
        # h5py looks datasets up slowly (a quarter of a millisecond each): keep them.
        self._datasets: dict[str, h5py.Dataset] = {}
        self._rows: int | None = None  # cached: asking HDF5 for a shape is slow too
        self._next_id: int | None = None
        creating = mode == "w" or (mode == "a" and not self.path.exists())
        if creating:
            self._create()
        else:
            self._open_existing()

    def _create(self) -> None:
        from featurekit import store_parts

        replaced_parts = self.mode == "w" and store_parts.parts_dir(self.path).is_dir()
        try:
            self._file = h5py.File(self.path, "w")
            self._file.attrs[_FORMAT_ATTR] = _FORMAT_VERSION
        except OSError as exc:
            self.close()
            raise store_error(exc, f"create the feature store {self.path}") from exc
        if replaced_parts:
            try:
                store_parts.remove_parts(self.path)
            except OSError as exc:
                raise store_error(exc, f"remove the parts of the replaced store {self.path}"
                                  ) from exc

    def _open_existing(self) -> None:
        from featurekit import store_parts

        _check_existing(self.path)
        try:
            # A parted store's index is never modified in place: appends rewrite it.
            file = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"Cannot open feature store {self.path}: {exc}") from exc
        try:
            if _FORMAT_ATTR not in file.attrs:
                raise InputError(
                    f"{self.path} is an HDF5 file but not a featurekit feature store "
                    f"(it has no {_FORMAT_ATTR!r} attribute)."
                )
            self._parts = store_parts.read_index(self.path, file)
            if self._parts is None and self.mode == "a":
                file.close()
                try:
                    file = h5py.File(self.path, "a")
                except OSError as exc:
                    raise store_error(exc, f"open {self.path} for appending") from exc
        except BaseException:
            file.close()
            raise
        self._file = file
        self._datasets = {name: file[name] for name in _COLUMNS if name in file}
        self._rows = self._next_id = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._file is None else f"{len(self)} rows"
        return f"FeatureStore({str(self.path)!r}, mode={self.mode!r}) <{state}>"

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._datasets = {}
            self._rows = None

    # -- reading -------------------------------------------------------------
    def __len__(self) -> int:
        if self._rows is None:
            features = self._dataset("features")
            self._rows = 0 if features is None else int(features.shape[0])
        self._open_file()
        return self._rows

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_samples, n_features)``; ``(0, 0)`` before the first append."""
        features = self._dataset("features")
        return (0, 0) if features is None else (int(features.shape[0]), int(features.shape[1]))

    @property
    def ndim(self) -> int:
        """Always 2, as for a table of features."""
        return 2

    @property
    def dtype(self) -> np.dtype:
        """The features' storage dtype (float32 before the first append)."""
        features = self._dataset("features")
        return np.dtype(np.float32) if features is None else features.dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        """Read feature rows: an int, a slice, a list or array of ints, or a boolean mask."""
        features = self._dataset("features")
        n = len(self)
        if isinstance(index, tuple):  # store[rows, columns]: columns cut after reading
            rows, *columns = index
            out = self[rows]
            return out[tuple(columns)] if out.ndim == 1 else out[(slice(None), *columns)]
        if isinstance(index, (int, np.integer)):
            if not -n <= index < n:
                raise IndexError(f"row {index} is out of range for a store of {n} rows")
            return features[int(index) % n]
        if isinstance(index, slice):
            if features is None:
                return np.empty((0, 0), np.float32)
            return features[index]
        rows = np.asarray(index)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise IndexError(f"a boolean index must have shape ({n},); got {rows.shape}")
            rows = np.flatnonzero(rows)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise IndexError(f"rows must be an int, a slice, or a 1-D array of ints; got {index!r}")
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"rows out of range for a store of {n} rows")
        if features is None or rows.size == 0:
            return np.empty((0, self.shape[1]), self.dtype)
        # h5py reads increasing, unique indices only.
        unique, inverse = np.unique(rows % n, return_inverse=True)
        return features[unique][inverse]

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def iter_batches(
        self, batch_size: int = 65536, dtype: DTypeLike = np.float32
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(features, ids)`` blocks of at most ``batch_size`` rows, in order.

        Memory is bounded by the batch: use it to fill a FAISS index
        (``index.add_with_ids(features, ids)``) or to fit incrementally.

        Parameters
        ----------
        batch_size : int, default=65536
            Rows per block.
        dtype : dtype, default=float32
            The dtype of the features blocks.

        Yields
        ------
        features : ndarray of shape (n_rows, n_features)
        ids : ndarray of int64 of shape (n_rows,)

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> path = write_store(os.path.join(tempfile.mkdtemp(), "f.h5"), np.eye(5))
        >>> with FeatureStore(path) as store:
        ...     [ids.tolist() for _, ids in store.iter_batches(batch_size=2)]
        [[0, 1], [2, 3], [4]]
        """
        features, ids = self._dataset("features"), self._dataset("ids")
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield features[start:stop].astype(dtype, copy=False), ids[start:stop]

    @property
    def features(self) -> h5py.Dataset | None:
        """The ``features`` dataset (sliced lazily), or None before the first append."""
        return self._dataset("features")

    @property
    def ids(self) -> h5py.Dataset | None:
        """The int64 ``ids`` dataset, or None before the first append."""
        return self._dataset("ids")

    @property
    def labels(self) -> h5py.Dataset | None:
        """The int64 ``labels`` dataset, or None if the store has no labels."""
        return self._dataset("labels")

    @property
    def keys(self) -> h5py.Dataset | None:
        """The ``keys`` dataset, or None if the store has no keys.

        Slicing it yields bytes; ``store.keys.asstr()[:]`` yields str.
        """
        return self._dataset("keys")

    @property
    def parts(self) -> list[Path]:
        """The part files of a store written by :func:`extract`; empty for one file."""
        self._open_file()
        if self._parts is None:
            return []
        from featurekit import store_parts

        return [store_parts.parts_dir(self.path) / p["name"] for p in self._parts["parts"]]

    @property
    def complete(self) -> bool:
        """False while an extraction into this store is unfinished (or was interrupted)."""
        self._open_file()
        expected = None if self._parts is None else self._parts.get("n_samples")
        return expected is None or len(self) == expected

    @property
    def metadata(self) -> dict[str, Any]:
        """The JSON metadata dict; empty if none was set."""
        raw = self._open_file().attrs.get(_METADATA_ATTR)
        if raw is None:
            return {}
        try:
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"The metadata of {self.path} is not valid JSON: {exc}") from None

    @metadata.setter
    def metadata(self, value: Mapping[str, Any]) -> None:
        self.set_metadata(value)

    def read(self) -> dict[str, np.ndarray]:
        """Load the whole store into memory.

        Returns
        -------
        dict of str to ndarray
            ``features`` and ``ids`` always (empty before the first append),
            ``labels`` and ``keys`` (as str) when the store has them.
        """
        self._open_file()
        features, ids = self.features, self.ids
        out = {
            "features": np.empty((0, 0), np.float32) if features is None else features[:],
            "ids": np.empty(0, np.int64) if ids is None else ids[:],
        }
        if self.labels is not None:
            out["labels"] = self.labels[:]
        if self.keys is not None:
            out["keys"] = self.keys.asstr()[:]
        return out

    # -- writing -------------------------------------------------------------
    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the store's metadata.

        Parameters
        ----------
        metadata : mapping
            Anything JSON can encode; NumPy scalars and arrays become numbers
            and lists.
        """
        self._check_writable()
        text = metadata_json(metadata)
        if self._parts is not None:
            from featurekit import store_parts

            with store_parts.locked(self.path):
                self._reload()  # the index as the last writer left it
                self._rewrite_index(metadata=json.loads(text))
            return
        file = self._open_file()
        file.attrs[_METADATA_ATTR] = text
        file.flush()

    def append(
        self,
        features: ArrayLike,
        ids: ArrayLike | None = None,
        *,
        labels: ArrayLike | None = None,
        keys: Sequence[str] | None = None,
        dtype: DTypeLike | None = None,
    ) -> None:
        """Add rows at the end of the store and flush them to disk.

        In a store written by :func:`extract`, the rows become a new part,
        committed atomically.

        Parameters
        ----------
        features : array-like of shape (n_rows, n_features)
            Real-valued features, cast to the store's dtype. ``n_features``
            must match the rows already stored.
        ids : array-like of int of shape (n_rows,), optional
            Defaults to the integers after the last stored id (from 0).
        labels : array-like of int of shape (n_rows,), optional
            Integer labels. Give them on every append or on none.
        keys : sequence of str of length n_rows, optional
            Per-row strings such as file names. Give them on every append or
            on none.
        dtype : {"float32", "float16"}, optional
            Storage dtype of ``features``, chosen on the first append;
            float32 if not given.

        Raises
        ------
        InputError
            If any input has the wrong shape, type or length, or the store is
            read-only. Nothing is written then.
        StoreError
            If the disk refuses the write.
        """
        self._check_writable()
        columns = self._columns(features, ids, labels, keys, dtype)
        if self._parts is not None:
            self._append_part(columns)
            return
        n_stored, n_rows = len(self), len(columns["features"])
        file = self._open_file()
        try:
            for name, values in columns.items():
                dataset = self._dataset(name)
                if dataset is None:
                    dataset = self._create_dataset(name, values)
                dataset.resize(n_stored + n_rows, axis=0)
                dataset[n_stored:] = values
            file.flush()
        except OSError as exc:
            self._truncate(n_stored)
            raise store_error(exc, f"append to {self.path}", "The rows stored before are kept."
                              ) from exc
        self._rows = n_stored + n_rows
        if n_rows:
            self._next_id = int(columns["ids"][-1]) + 1

    def _truncate(self, n_rows: int) -> None:
        """Best effort after a failed append: every column back to ``n_rows`` rows."""
        for dataset in self._datasets.values():
            with contextlib.suppress(OSError, ValueError):
                dataset.resize(n_rows, axis=0)
        with contextlib.suppress(OSError, ValueError):
            self._open_file().flush()
        self._rows = self._next_id = None

    def _columns(self, features: ArrayLike, ids: ArrayLike | None, labels: ArrayLike | None,
                 keys: Sequence[str] | None, dtype: DTypeLike | None) -> dict[str, np.ndarray]:
        """The validated, converted columns of an append."""
        feats = _check_features(features)
        n_rows, width = feats.shape
        store_dtype = self._feature_dtype(dtype)
        with np.errstate(over="ignore"):  # overflow is reported below, with its fix
            cast = feats.astype(store_dtype, copy=False)
        if store_dtype == np.float16 and not np.array_equal(
            np.isfinite(cast), np.isfinite(feats)
        ):
            raise InputError(
                "features exceed the float16 range (largest finite value 65504); "
                "store them as dtype='float32'."
            )
        existing = self._dataset("features")
        if existing is not None and existing.shape[1] != width:
            raise InputError(
                f"features have {width} columns but the store holds {existing.shape[1]}."
            )
        n_stored = len(self)
        if ids is None:
            if self._next_id is None:
                self._next_id = int(self.ids[-1]) + 1 if n_stored else 0
            id_array = np.arange(self._next_id, self._next_id + n_rows, dtype=np.int64)
        else:
            id_array = _check_integers(ids, "ids", n_rows)
        columns = {"features": cast, "ids": id_array}
        if labels is not None:
            columns["labels"] = _check_integers(labels, "labels", n_rows)
        if keys is not None:
            columns["keys"] = _check_keys(keys, n_rows)
        for name in ("labels", "keys"):
            stored, given = self._dataset(name) is not None, name in columns
            if stored and not given:
                raise InputError(
                    f"The store has {name}, so every append must give them; {name} is missing."
                )
            if given and not stored and n_stored:
                raise InputError(
                    f"The store's {n_stored} existing rows have no {name}; give {name} on "
                    f"every append or on none."
                )
        return columns

    def _append_part(self, columns: dict[str, np.ndarray]) -> None:
        from featurekit import store_parts

        n_rows = len(columns["features"])
        with store_parts.locked(self.path):
            self._reload()  # the index as the last writer left it
            if not self.complete:
                raise InputError(
                    f"{self.path} is an unfinished extraction ({len(self)} of "
                    f"{self._parts['n_samples']} rows); run the extraction again to complete "
                    f"it before appending."
                )
            if n_rows == 0:
                return
            index = max((p.index for p in store_parts.scan(self.path)), default=-1) + 1
            start = len(self)
            try:
                part = store_parts.write_part(
                    self.path, index, start, start + n_rows, [columns], info={},
                    dtype=columns["features"].dtype, compression=self.compression)
            except OSError as exc:
                raise store_error(exc, f"write a part of {self.path}",
                                  "The store is unchanged.") from exc
            try:
                self._rewrite_index(added=part, n_samples=start + n_rows)
            except BaseException:
                part.path.unlink(missing_ok=True)  # unlisted: the store stays as it was
                raise

    def _rewrite_index(self, *, metadata: dict | None = None, added: Any = None,
                       n_samples: int | None = None) -> None:
        """Replace a parted store's index atomically, then reopen it."""
        from featurekit import store_parts

        listed = store_parts.listed_parts(self.path, self._parts)
        metadata = self.metadata if metadata is None else metadata
        layout = dict(self._parts)
        if n_samples is not None:
            layout["n_samples"] = n_samples
        self.close()
        try:
            store_parts.write_index(self.path, [*listed, *([added] if added else [])], metadata,
                              part_size=layout.get("part_size"),
                              n_samples=layout.get("n_samples"))
        except OSError as exc:
            raise store_error(exc, f"rewrite the index {self.path}",
                              "The store is unchanged.") from exc
        finally:
            self._open_existing()

    # -- internals -----------------------------------------------------------
    def _reload(self) -> None:
        self.close()
        self._open_existing()

    def _open_file(self) -> h5py.File:
        if self._file is None:
            raise InputError(f"The feature store {self.path} is closed.")
        return self._file

    def _check_writable(self) -> None:
        self._open_file()
        if self.mode == "r":
            raise InputError(
                f"The feature store {self.path} is open read-only; open it with "
                f"mode='a' to write."
            )

    def _dataset(self, name: str) -> h5py.Dataset | None:
        self._open_file()
        return self._datasets.get(name)

    def _feature_dtype(self, dtype: DTypeLike | None) -> np.dtype:
        existing = self._dataset("features")
        try:
            requested = None if dtype is None else np.dtype(dtype)
        except TypeError:
            requested = np.dtype(object)
        if requested is not None and requested not in _FEATURE_DTYPES:
            raise InputError(f"dtype must be 'float32' or 'float16'; got {dtype!r}.")
        if existing is None:
            return requested or np.dtype(np.float32)
        if requested is not None and requested != existing.dtype:
            raise InputError(
                f"The store already holds {existing.dtype} features; dtype={dtype!r} "
                f"only applies to the first append."
            )
        return existing.dtype

    def _create_dataset(self, name: str, values: np.ndarray) -> h5py.Dataset:
        file = self._open_file()
        if name == "keys":
            dtype = h5py.string_dtype()
            item_bytes = 16  # a variable-length string is stored as a heap reference
        else:
            dtype = values.dtype
            item_bytes = values.dtype.itemsize
        shape = (0, *values.shape[1:])
        chunks = chunk_shape(shape, item_bytes)
        if self.max_chunk_rows is not None:
            chunks = (min(chunks[0], int(self.max_chunk_rows)), *chunks[1:])
        dataset = file.create_dataset(
            name,
            shape=shape,
            maxshape=(None, *values.shape[1:]),
            dtype=dtype,
            chunks=chunks,
            compression=self.compression,
            # Shuffling bytes groups exponents together, which is what makes
            # floats compressible at all.
            shuffle=self.compression is not None,
        )
        self._datasets[name] = dataset
        return dataset


def write_store(
    path: str | os.PathLike[str],
    features: ArrayLike,
    *,
    ids: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    keys: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    dtype: DTypeLike = "float32",
    compression: str | None = None,
) -> Path:
    """Write a complete feature store atomically.

    The store is written to ``<path>.tmp`` beside ``path``, synced to disk,
    then renamed onto ``path``; a crash or an error at any point leaves
    ``path`` as it was (absent, or the previous store). Two processes must
    not write the same ``path`` at once, as they would share the temporary
    file.

    Parameters
    ----------
    path : str or path-like
        The store to create or replace.
    features : array-like of shape (n_samples, n_features)
        The features.
    ids, labels, keys
        As in :meth:`FeatureStore.append`.
    metadata : mapping, optional
        JSON-encodable metadata.
    dtype : {"float32", "float16"}, default="float32"
        Storage dtype of the features.
    compression : {None, "lzf", "gzip"}, default=None
        Dataset compression.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        If an input is invalid; ``path`` is untouched.
    StoreError
        If the disk refuses the write; ``path`` is untouched.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = write_store(os.path.join(tempfile.mkdtemp(), "f.h5"), np.eye(3),
    ...                    labels=[0, 1, 2], metadata={"n_features_out": 3})
    >>> with FeatureStore(path) as store:
    ...     store.read()["labels"].tolist(), store.metadata
    ([0, 1, 2], {'n_features_out': 3})
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with FeatureStore(tmp, mode="w", compression=compression) as store:
            store.append(features, ids=ids, labels=labels, keys=keys, dtype=dtype)
            if metadata is not None:
                store.set_metadata(metadata)
        commit_file(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise store_error(exc, f"write the feature store {path}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def __getattr__(name: str) -> Any:
    # extract() lives in featurekit.extraction, which imports this module.
    if name == "extract":
        from featurekit.extraction import extract

        return extract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- helpers shared with featurekit.store_parts and featurekit.extraction -------------

def commit_file(tmp: Path, path: Path) -> None:
    """Sync ``tmp`` to disk, rename it onto ``path``, and sync the folder: all or nothing."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


def store_error(exc: OSError, doing: str, kept: str = "") -> StoreError:
    """A :class:`StoreError` saying what failed, why, and how to fix it."""
    code = exc.errno
    if code is None:  # HDF5 reports the system's error inside its message
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if isinstance(exc, StoreError):
        message = str(exc)  # already says what failed; ``kept`` may add to it
    else:
        hint = {
            errno.ENOSPC: "The disk is full: free some space",
            errno.EDQUOT: "The disk quota is exhausted: free some space",
            errno.EROFS: "The target is on a read-only file system: choose another path",
            errno.EACCES: "There is no permission to write there: choose another path",
            errno.EPERM: "There is no permission to write there: choose another path",
        }.get(code, "Check the target path and the disk")
        message = f"Cannot {doing}: {exc.strerror or exc}. {hint}."
    error = StoreError(f"{message} {kept}" if kept else message)
    error.errno = code
    return error


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """``metadata`` as a JSON string, or an :class:`InputError` saying why it cannot be."""
    if not isinstance(metadata, Mapping):
        raise InputError(f"metadata must be a mapping; got {type(metadata).__name__}.")
    try:
        return json.dumps(dict(metadata), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata cannot be stored as JSON: {exc}") from exc


def chunk_shape(shape: tuple[int, ...], item_bytes: int) -> tuple[int, ...]:
    """Chunks of about ``_CHUNK_BYTES``, whole rows unless one row is too big."""
    row_items = int(np.prod(shape[1:], dtype=np.int64))
    row_bytes = max(1, row_items) * item_bytes
    if row_bytes > _MAX_CHUNK_BYTES:
        return (1, max(1, _CHUNK_BYTES // item_bytes), *shape[2:])
    return (max(1, _CHUNK_BYTES // row_bytes), *shape[1:])


def _check_existing(path: Path) -> None:
    if not path.exists():
        from featurekit import store_parts

        hint = ""
        if store_parts.parts_dir(path).is_dir():
            hint = (f" ({store_parts.parts_dir(path).name}/ holds parts of an interrupted "
                    f"extraction: run it again to resume)")
        raise InputError(f"No feature store at {path}: the file does not exist{hint}.")
    if not path.is_file():
        raise InputError(f"Cannot open {path} as a feature store: it is not a file.")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise InputError(f"Cannot read feature store {path}: {exc}") from exc
    if not is_hdf5:
        raise InputError(f"{path} is not a feature store: it is not HDF5.")


def _check_features(features: ArrayLike) -> np.ndarray:
    array = np.asarray(features)
    if array.ndim != 2:
        raise InputError(
            f"features must be 2-D of shape (n_rows, n_features); got shape {array.shape}."
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.issubdtype(
        array.dtype, np.complexfloating
    ):
        raise InputError(f"features must be real numbers; got dtype {array.dtype}.")
    if array.shape[1] == 0:
        raise InputError("features have no columns (shape (n_rows, 0)).")
    return array


def _check_integers(values: ArrayLike, name: str, n_rows: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{name} must be 1-D; got shape {array.shape}.")
    if len(array) != n_rows:
        raise InputError(f"{name} has {len(array)} entries but features have {n_rows} rows.")
    if len(array) and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer)):
        hint = ""
        if name == "labels":
            hint = " (encode them with np.unique(..., return_inverse=True))"
        raise InputError(f"{name} must be integers{hint}; got dtype {array.dtype}.")
    return array.astype(np.int64, copy=False)


def _check_keys(keys: Sequence[str], n_rows: int) -> np.ndarray:
    array = np.asarray(keys, dtype=object)
    if array.ndim != 1:
        raise InputError(f"keys must be a 1-D sequence of str; got shape {array.shape}.")
    if len(array) != n_rows:
        raise InputError(f"keys has {len(array)} entries but features have {n_rows} rows.")
    bad = next((k for k in array if not isinstance(k, str)), None)
    if bad is not None:
        raise InputError(f"keys must be str; got {type(bad).__name__} {bad!r}.")
    return array


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is synced; Windows
    # cannot open a directory, and its os.replace is already durable enough.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
