"""Streaming extraction: a fitted estimator's features straight into a feature store.

:func:`extract` runs the estimator over its input batch by batch and writes
each batch to disk at once, so memory is bounded by the batch, not by the
data set. The store is written in parts (layout in :mod:`featurekit.store_parts`):
an interrupted extraction, even one killed mid-part, resumes by redoing the
missing parts only, with every id exactly once.

Each store records what made it (provenance, root attribute
``featurekit_metadata``, JSON): the method, its parameters, the backbone, a
sha256 of the model's weights, the featurekit, torch and h5py versions, the
input, and the creation time. A store made by another model, or from other
data, is refused and never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted

from featurekit import store_parts
from featurekit.exceptions import InputError, ParameterError
from featurekit.store import (
    _COMPRESSIONS,
    _FEATURE_DTYPES,
    _FORMAT_ATTR,
    _METADATA_ATTR,
    FeatureStore,
    _check_existing,
    store_error,
)

__all__ = ["extract", "weights_sha256"]

#: Provenance that must match for a store to be resumed or reused.
IDENTITY = ("method", "model_sha256", "feature_parts", "n_features", "n_samples",
            "input_sha256", "dtype")


def extract(
    estimator: Any,
    X: Any,
    path: str | os.PathLike[str],
    *,
    ids: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    keys: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    part_size: int = 16384,
    batch_size: int | None = None,
    dtype: str = "float32",
    compression: str | None = None,
    resume: bool = True,
    verbose: int | None = None,
) -> Path:
    """Extract the features of ``X`` into a feature store at ``path``, streaming.

    Rows are computed ``batch_size`` at a time and written at once into
    parts of ``part_size`` rows; each part is committed atomically, and the
    store at ``path`` shows the committed parts as one (see
    :mod:`featurekit.store_parts`). Memory stays bounded by the batch, so ``X``
    may be far larger than memory: an h5py dataset, a folder or list of
    image files, or a :class:`~featurekit.store.FeatureStore` of an earlier
    extraction (for a tabular method).

    Parameters
    ----------
    estimator : FeatureExtractor
        A fitted featurekit estimator; its ``transform`` defines the features.
    X : array-like, images, h5py dataset or FeatureStore
        What ``estimator.transform`` takes.
    path : str or path-like
        The store to write: ``path`` and the folder ``<path>.parts/``.
    ids : array-like of int of shape (n_samples,), optional
        Row ids; by default each row's position in ``X`` (0 .. n_samples - 1).
    labels : array-like of int of shape (n_samples,), optional
        Integer labels to store beside the features.
    keys : sequence of str of length n_samples, optional
        A name per row, such as the source file's path.
    metadata : mapping, optional
        JSON-encodable entries added to the provenance (a key of the
        provenance itself cannot be replaced).
    part_size : int, default=16384
        Rows per part: an interruption costs at most one part's work. A
        resumed store keeps the part size it was started with.
    batch_size : int, optional
        Rows per forward pass; by default the estimator's ``inference_batch_size``.
    dtype : {"float32", "float16"}, default="float32"
        Storage dtype of the features.
    compression : {None, "lzf", "gzip"}, default=None
        Compression of the parts' datasets.
    resume : bool, default=True
        Complete an unfinished store of the same model and input at ``path``
        (a complete one is returned as it is). With False, any store at
        ``path`` is an error.
    verbose : int, optional
        0 hides the progress bar (as does a stderr that is not a terminal);
        by default the estimator's ``verbose``.

    Returns
    -------
    Path
        ``path``, a complete store of ``n_samples`` rows.

    Raises
    ------
    InputError
        If ``path`` holds something else: a file that is not a feature store,
        a store of another model or of other data, a store written in one
        piece; it is left as it is. Also for invalid ``ids``/``labels``/``keys``.
    StoreError
        If the disk refuses a write (full, read-only): the parts committed
        so far are kept, and the same call resumes once the cause is fixed.

    See Also
    --------
    featurekit.store.FeatureStore : Read the store.

    Examples
    --------
    >>> import tempfile, os, featurekit
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> est = featurekit.create("pretrained", backbone="mlp", random_state=0,
    ...                         backbone_kwargs={"hidden": (8,)}).fit(X[:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "feats.h5")
    >>> extract(est, X[:100], path, labels=y[:100], part_size=64).name
    'feats.h5'
    >>> with FeatureStore(path) as store:
    ...     store.shape, store.ids[-1], store.labels[:3].tolist(), len(store.parts)
    ((100, 8), np.int64(99), [0, 1, 2], 2)
    >>> with FeatureStore(path) as store:
    ...     store.metadata["method"], len(store.metadata["model_sha256"])
    ('pretrained', 64)
    """
    check_is_fitted(estimator, "modules_")
    _check_params(part_size, batch_size, dtype, compression, resume)
    path = Path(path)
    if batch_size is not None:
        # A shallow copy that shares the fitted modules (copy.copy would go through
        # __getstate__, which copies the weights and rebuilds the modules).
        shallow = object.__new__(type(estimator))
        shallow.__dict__.update(vars(estimator))
        shallow.inference_batch_size = batch_size
        estimator = shallow
    source = estimator._transform_inputs(X)
    n = source.n
    ids, labels, keys = _check_columns(n, ids, labels, keys)
    provenance = _provenance(estimator, X, source, np.dtype(dtype).name)
    identity = {k: provenance[k] for k in IDENTITY}
    # Entries of the caller's metadata come first: provenance cannot be overridden.
    meta = {**dict(metadata or {}), **provenance}
    if "input_description" in (metadata or {}):
        meta["input_description"] = metadata["input_description"]
    quiet = (estimator.verbose if verbose is None else verbose) == 0 or not sys.stderr.isatty()
    with store_parts.locked(path):
        done, index_stale, part_size, created = _reconcile(path, identity, part_size, resume)
        meta["created"] = created or meta["created"]
        n_parts = math.ceil(n / part_size)
        todo = [k for k in range(n_parts) if k not in done]
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=sum(p.rows for p in done.values()), unit="rows",
                   desc=f"extract {path.name}", disable=quiet, leave=False)
        try:
            info = {**identity, "part_size": part_size, "created": meta["created"]}
            for k in todo:
                start, stop = k * part_size, min(n, (k + 1) * part_size)
                blocks = _blocks(estimator, source, start, stop, ids, labels, keys)
                with _keeping(path, done):
                    done[k] = store_parts.write_part(path, k, start, stop, blocks, info=info,
                                               dtype=dtype, compression=compression)
                _write_index(path, done, meta, part_size, n_parts, n)
                bar.update(stop - start)
            if index_stale and not todo:
                _write_index(path, done, meta, part_size, n_parts, n)
        finally:
            bar.close()
    return path


def weights_sha256(module: torch.nn.Module) -> str:
    """The sha256 of a module's weights: its ``state_dict`` in a stable order.

    Every tensor adds its name, dtype and shape, then its bytes, in the order
    of the sorted names, so the digest depends on the weights alone (not on
    the device, the order of registration, or the Python process).

    Parameters
    ----------
    module : torch.nn.Module
        The model, such as a fitted estimator's ``modules_``.

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> b.load_state_dict(a.state_dict())
    <All keys matched successfully>
    >>> weights_sha256(a) == weights_sha256(b)
    True
    >>> with torch.no_grad():
    ...     b.bias[0] += 1
    >>> weights_sha256(a) == weights_sha256(b)
    False
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


# -- what a store was made from, and whether it may be resumed ---------------------------

def _provenance(estimator: Any, X: Any, source: Any, dtype: str) -> dict[str, Any]:
    import featurekit
    from featurekit import assembly

    selected = estimator._selected_parts()
    return {
        "method": estimator.name,
        "params": _json_safe(estimator.get_params(deep=False)),
        "backbone": _json_safe(getattr(estimator, "backbone_config_", None)),
        "model_sha256": weights_sha256(estimator.modules_),
        "feature_parts": selected,
        "n_features": estimator._parts_width(selected),
        "n_samples": source.n,
        "input_sha256": source.fingerprint(),
        "input_description": _describe(X, source),
        "dtype": dtype,
        "device": str(assembly.resolve_device(estimator.device)),
        "featurekit_version": featurekit.__version__,
        "torch_version": str(torch.__version__),
        "h5py_version": h5py.version.version,
        "hdf5_version": h5py.version.hdf5_version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _reconcile(path: Path, identity: dict[str, Any], part_size: int,
               resume: bool) -> tuple[dict[int, store_parts.Part], bool, int, str | None]:
    """What is already extracted at ``path``: the committed parts by number, whether the
    index must be rewritten, the part size and the creation time. Refuses anything else."""
    existing, layout = _existing_index(path)
    committed = store_parts.scan(path, clean=True)  # drops parts left half-written
    if not resume and (existing is not None or committed):
        raise InputError(f"{path} already exists; pass resume=True to complete it, or write "
                         f"to another path, or remove {_both(path)} to start over.")
    if existing is not None:
        _check_identity(path, existing, identity)
    for part in committed:
        _check_identity(path, part.info, identity)
    if layout is not None and layout.get("part_size"):
        part_size = int(layout["part_size"])
    elif committed:
        part_size = int(committed[0].info.get("part_size", part_size))
    n = identity["n_samples"]
    for part in committed:
        if (part.start, part.stop) != (part.index * part_size,
                                       min(n, (part.index + 1) * part_size)):
            raise InputError(f"The part {part.path} holds rows {part.start}..{part.stop}, "
                             f"which do not fit parts of {part_size} rows; remove it and run "
                             f"the extraction again to redo it.")
    listed = [] if layout is None else [p["name"] for p in layout["parts"]]
    stale = existing is None or listed != [p.path.name for p in committed]
    created = (existing or {}).get("created") or next(
        (p.info.get("created") for p in committed), None)
    return {p.index: p for p in committed}, stale, part_size, created


def _existing_index(path: Path) -> tuple[dict | None, dict | None]:
    """The metadata and layout of the store at ``path`` (None, None if there is none)."""
    if not os.path.lexists(path):
        return None, None
    refuse = "it is never overwritten: write to another path, or remove it"
    try:
        _check_existing(path)
        with h5py.File(path, "r") as file:
            if _FORMAT_ATTR not in file.attrs:
                raise InputError(f"{path} is an HDF5 file but not a featurekit feature store")
            metadata = json.loads(file.attrs.get(_METADATA_ATTR, "{}"))
            # Missing parts are no reason to refuse here: the extraction redoes them.
            layout = store_parts.read_index(path, file, check_parts=False)
    except InputError as exc:
        raise InputError(f"{str(exc).rstrip('.')}; {refuse}.") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as a feature store ({exc}); {refuse}."
                         ) from None
    if layout is None:
        raise InputError(f"{path} is a feature store written in one piece, not by an "
                         f"extraction, so it cannot be resumed; {refuse}.")
    return metadata, layout


def _check_identity(path: Path, found: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    fix = f"write to another path (-o), or remove {_both(path)} to start over"
    if any(found.get(k) != wanted[k] for k in ("method", "model_sha256")):
        origin = f", from {found['model']}" if found.get("model") else ""
        raise InputError(
            f"{path} holds features of another model: {found.get('method')} with weights "
            f"sha256 {str(found.get('model_sha256'))[:12]}{origin}; this model is "
            f"{wanted['method']} with weights sha256 {wanted['model_sha256'][:12]}. "
            f"The store is never overwritten: {fix}.")
    if any(found.get(k) != wanted[k] for k in ("feature_parts", "n_features")):
        raise InputError(
            f"{path} holds the parts {found.get('feature_parts')} ({found.get('n_features')} "
            f"features) of this model, and part= now selects {wanted['feature_parts']} "
            f"({wanted['n_features']} features); set part= as before to resume, or {fix}.")
    if any(found.get(k) != wanted[k] for k in ("n_samples", "input_sha256")):
        raise InputError(
            f"{path} was extracted from other data ({found.get('n_samples')} samples, "
            f"{found.get('input_description', 'input')!r}) than this input "
            f"({wanted['n_samples']} samples); pass the same data to resume it, or {fix}.")
    if found.get("dtype") != wanted["dtype"]:
        raise InputError(f"{path} stores {found.get('dtype')} features; pass "
                         f"dtype={found.get('dtype')!r} to resume it, or {fix}.")


def _both(path: Path) -> str:
    return f"{path.name} and {store_parts.parts_dir(path).name}/"


# -- writing -------------------------------------------------------------------------

def _blocks(estimator: Any, source: Any, start: int, stop: int, ids: Any, labels: Any,
            keys: Any) -> Iterator[dict[str, Any]]:
    """The rows ``[start, stop)``, one batch at a time, as keyword arguments of ``append``."""
    offset = start
    for features in estimator._iter_features(source, np.arange(start, stop)):
        end = offset + len(features)
        block = {"features": features,
                 "ids": np.arange(offset, end) if ids is None else ids[offset:end]}
        if labels is not None:
            block["labels"] = labels[offset:end]
        if keys is not None:
            block["keys"] = list(keys[offset:end])
        yield block
        offset = end


@contextlib.contextmanager
def _keeping(path: Path, done: dict[int, store_parts.Part]) -> Iterator[None]:
    """Turn a refused write into a :class:`StoreError` that says what is kept."""
    try:
        yield
    except OSError as exc:
        rows = sum(p.rows for p in done.values())
        kept = (f"The {len(done)} parts committed ({rows} rows) are kept; run the "
                f"extraction again to resume." if done else "Nothing was committed.")
        raise store_error(exc, f"write the feature store {path}", kept) from exc


def _write_index(path: Path, done: dict[int, store_parts.Part], meta: dict[str, Any],
                 part_size: int, n_parts: int, n: int) -> None:
    if len(done) == n_parts:
        meta = {**meta, "completed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with _keeping(path, done):
        store_parts.write_index(path, list(done.values()), meta, part_size=part_size, n_samples=n)


# -- checks and descriptions ---------------------------------------------------------

def _check_params(part_size: Any, batch_size: Any, dtype: Any, compression: Any,
                  resume: Any) -> None:
    for name, value in (("part_size", part_size), ("batch_size", batch_size)):
        if value is None and name == "batch_size":
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ParameterError(f"The {name!r} parameter of extract must be an int >= 1. "
                                 f"Got {value!r} instead.")
    try:
        ok = np.dtype(dtype) in _FEATURE_DTYPES
    except TypeError:
        ok = False
    if not ok:
        raise ParameterError(f"The 'dtype' parameter of extract must be 'float32' or "
                             f"'float16'. Got {dtype!r} instead.")
    if compression not in _COMPRESSIONS:
        raise ParameterError(f"The 'compression' parameter of extract must be None, 'lzf' or "
                             f"'gzip'. Got {compression!r} instead.")
    if not isinstance(resume, bool):
        raise ParameterError(f"The 'resume' parameter of extract must be a bool. Got "
                             f"{resume!r} instead.")


def _check_columns(n: int, ids: Any, labels: Any, keys: Any) -> tuple[Any, Any, Any]:
    """Per-row columns of the right length; in-memory ones checked whole, lazy ones
    (h5py datasets) batch by batch as they are written."""
    out = []
    for name, values in (("ids", ids), ("labels", labels), ("keys", keys)):
        if values is not None:
            if not hasattr(values, "__len__") or len(values) != n:
                length = len(values) if hasattr(values, "__len__") else "no"
                raise InputError(f"{name} has {length} entries but X has {n} samples.")
            if name != "keys" and isinstance(values, (list, tuple, np.ndarray)):
                values = np.asarray(values)
                if values.ndim != 1 or (n and not np.issubdtype(values.dtype, np.integer)):
                    raise InputError(f"{name} must be a 1-D array of integers; got shape "
                                     f"{values.shape}, dtype {values.dtype}.")
        out.append(values)
    return tuple(out)


def _describe(X: Any, source: Any) -> str:
    if isinstance(X, h5py.Dataset):
        return f"HDF5 dataset {X.name} of {X.file.filename}: {X.shape} {X.dtype}"
    if isinstance(X, FeatureStore):
        return f"feature store {X.path}: {X.shape} {X.dtype}"
    if isinstance(X, (str, os.PathLike)):
        return f"{os.fspath(X)}: {source.n} samples"
    if isinstance(X, (list, tuple)):
        files = bool(X) and isinstance(X[0], (str, os.PathLike))
        return f"{len(X)} image files" if files else f"list of {len(X)} samples"
    if hasattr(X, "shape") and hasattr(X, "dtype"):
        return f"{type(X).__name__} {tuple(X.shape)} {X.dtype}"
    return f"{type(X).__name__} of {source.n} samples"


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
