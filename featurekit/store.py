"""A minimal HDF5 feature store: features, ids, labels and keys, appendable.

Extracted features often outgrow memory, so they are written batch by batch
into chunked, resizable HDF5 datasets and read back lazily through h5py.
Metadata lives in one JSON string attribute, never in a pickle, so a store
can be opened safely whatever its origin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from featurekit.exceptions import InputError

__all__ = ["FeatureStore", "write_store"]

# Root attribute marking a featurekit store; its value is the format version.
_FORMAT_ATTR = "featurekit_format"
_FORMAT_VERSION = 1
_METADATA_ATTR = "featurekit_metadata"

_MODES = ("r", "a", "w")
_COMPRESSIONS = (None, "lzf", "gzip")
_FEATURE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))

# h5py recommends chunks of roughly 10 KiB to 1 MiB; half a MiB reads well
# row-wise and column-wise without wasting much space in a small store.
_CHUNK_BYTES = 512 * 1024
_MAX_CHUNK_BYTES = 1024 * 1024


class FeatureStore:
    """An HDF5 file of feature rows with their ids and optional labels and keys.

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
        The HDF5 file.
    mode : {"r", "a", "w"}, default="r"
        ``"r"`` reads an existing store; ``"a"`` reads and appends, creating
        the file if it is missing; ``"w"`` creates the file, replacing any.
    compression : {None, "lzf", "gzip"}, default=None
        Compression of datasets this store creates. ``"lzf"`` is fast,
        ``"gzip"`` smaller; features rarely compress well, hence no default.

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
        or is an HDF5 file that featurekit did not write.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "feats.h5")
    >>> with FeatureStore(path, mode="w") as store:
    ...     store.append(np.ones((3, 4)), labels=[0, 1, 0])
    ...     store.append(np.zeros((2, 4)), labels=[1, 1])
    ...     store.set_metadata({"method": "simclr"})
    >>> with FeatureStore(path) as store:
    ...     len(store), store.features.shape, store.ids[:].tolist(), store.metadata
    (5, (5, 4), [0, 1, 2, 3, 4], {'method': 'simclr'})
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "r",
        *,
        compression: str | None = None,
    ) -> None:
        if mode not in _MODES:
            raise InputError(f"mode must be one of 'r', 'a', 'w'; got {mode!r}.")
        if compression not in _COMPRESSIONS:
            raise InputError(
                f"compression must be None, 'lzf' or 'gzip'; got {compression!r}."
            )
        self.path = Path(path)
        self.mode = mode
        self.compression = compression
        creating = mode == "w" or (mode == "a" and not self.path.exists())
        if not creating:
            _check_existing(self.path)
        try:
            self._file: h5py.File | None = h5py.File(self.path, mode)
        except OSError as exc:
            raise InputError(f"Cannot open feature store {self.path}: {exc}") from exc
        if creating:
            self._file.attrs[_FORMAT_ATTR] = _FORMAT_VERSION
        elif _FORMAT_ATTR not in self._file.attrs:
            self._file.close()
            self._file = None
            raise InputError(
                f"{self.path} is an HDF5 file but not a featurekit feature store "
                f"(it has no {_FORMAT_ATTR!r} attribute)."
            )

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

    def __len__(self) -> int:
        features = self._dataset("features")
        return 0 if features is None else int(features.shape[0])

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
    def metadata(self) -> dict[str, Any]:
        """The JSON metadata dict; empty if none was set."""
        raw = self._open_file().attrs.get(_METADATA_ATTR)
        if raw is None:
            return {}
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)

    @metadata.setter
    def metadata(self, value: Mapping[str, Any]) -> None:
        self.set_metadata(value)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the store's metadata.

        Parameters
        ----------
        metadata : mapping
            Anything JSON can encode; NumPy scalars and arrays become numbers
            and lists.
        """
        file = self._writable_file()
        if not isinstance(metadata, Mapping):
            raise InputError(f"metadata must be a mapping; got {type(metadata).__name__}.")
        try:
            text = json.dumps(dict(metadata), default=_json_default)
        except (TypeError, ValueError) as exc:
            raise InputError(f"metadata cannot be stored as JSON: {exc}") from exc
        file.attrs[_METADATA_ATTR] = text
        file.flush()

    def append(
        self,
        features: ArrayLike,
        ids: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        keys: Sequence[str] | None = None,
        *,
        dtype: DTypeLike | None = None,
    ) -> None:
        """Add rows at the end of the store and flush them to disk.

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
        """
        file = self._writable_file()
        feats = _check_features(features)
        n_rows, width = feats.shape
        store_dtype = self._feature_dtype(dtype)
        with np.errstate(over="ignore"):  # overflow is reported below, with its fix
            cast = feats.astype(store_dtype)
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
            first = int(self.ids[-1]) + 1 if n_stored else 0
            id_array = np.arange(first, first + n_rows, dtype=np.int64)
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
        for name, values in columns.items():
            dataset = self._dataset(name)
            if dataset is None:
                dataset = self._create_dataset(name, values)
            dataset.resize(n_stored + n_rows, axis=0)
            dataset[n_stored:] = values
        file.flush()

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

    def _open_file(self) -> h5py.File:
        if self._file is None:
            raise InputError(f"The feature store {self.path} is closed.")
        return self._file

    def _writable_file(self) -> h5py.File:
        file = self._open_file()
        if self.mode == "r":
            raise InputError(
                f"The feature store {self.path} is open read-only; open it with "
                f"mode='a' to write."
            )
        return file

    def _dataset(self, name: str) -> h5py.Dataset | None:
        return self._open_file().get(name)

    def _feature_dtype(self, dtype: DTypeLike | None) -> np.dtype:
        existing = self._dataset("features")
        requested = None if dtype is None else np.dtype(dtype)
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
        return file.create_dataset(
            name,
            shape=shape,
            maxshape=(None, *values.shape[1:]),
            dtype=dtype,
            chunks=_chunk_shape(shape, item_bytes),
            compression=self.compression,
            # Shuffling bytes groups exponents together, which is what makes
            # floats compressible at all.
            shuffle=self.compression is not None,
        )


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
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _check_existing(path: Path) -> None:
    if not path.exists():
        raise InputError(f"No feature store at {path}: the file does not exist.")
    if not path.is_file():
        raise InputError(f"Cannot open {path} as a feature store: it is not a file.")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise InputError(f"Cannot read feature store {path}: {exc}") from exc
    if not is_hdf5:
        raise InputError(f"{path} is not a feature store: it is not HDF5.")


def _chunk_shape(shape: tuple[int, ...], item_bytes: int) -> tuple[int, ...]:
    """Chunks of about ``_CHUNK_BYTES``, whole rows unless one row is too big."""
    row_items = int(np.prod(shape[1:], dtype=np.int64))
    row_bytes = max(1, row_items) * item_bytes
    if row_bytes > _MAX_CHUNK_BYTES:
        return (1, max(1, _CHUNK_BYTES // item_bytes), *shape[2:])
    return (max(1, _CHUNK_BYTES // row_bytes), *shape[1:])


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
    return array.astype(np.int64)


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
