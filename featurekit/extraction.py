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

Sharded extraction: N processes write one store, each computing the parts
``k`` with ``k % N == rank`` (deterministic, so no row is computed twice or
left out). Run ``featurekit extract MODEL DATA -o feats.h5 --nproc N`` on one
machine, or ``--shard I/N`` (``I`` = 0 .. N-1) on machines that share the
folder, or call ``extract(est, X, path, shard=(rank, N))`` yourself
(``shard="env"`` takes ``RANK`` and ``WORLD_SIZE`` from ``torchrun``). Every
shard must be given the same model and input (a different one is refused);
each adds its committed parts to the index as it goes, so the store is
complete, ids ``0 .. n-1`` in input order, once every shard has returned. A
shard that was interrupted resumes by running it again, like any extraction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    shard: tuple[int, int] | str | None = None,
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
    shard : (rank, world_size) or "env", optional
        Write only shard ``rank`` of ``world_size`` processes that write the
        store together: the parts ``k`` with ``k % world_size == rank``. Each
        process passes the same arguments but its own ``rank``; ``"env"``
        reads ``RANK`` and ``WORLD_SIZE`` (set by ``torchrun``). The store is
        complete once every shard has returned. Needs ``resume=True`` (the
        shards join one store) and POSIX file locks.
    verbose : int, optional
        0 hides the progress bar (as does a stderr that is not a terminal);
        by default the estimator's ``verbose``. Of shards, only rank 0 shows
        it, counting the rows every shard has committed.

    Returns
    -------
    Path
        ``path``, a complete store of ``n_samples`` rows (of a shard: once
        the other shards have returned too).

    Raises
    ------
    InputError
        If ``path`` holds something else: a file that is not a feature store,
        a store of another model or of other data (for a shard: other than
        the shards before it were given), a store written in one piece; it
        is left as it is. Also for invalid ``ids``/``labels``/``keys``, and
        while a process writes ``path`` in a way that would clash: a plain
        extraction, the same shard, or shards of another ``world_size``.
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

    Two shards (each would run in its own process) write one store:

    >>> sharded = os.path.join(tempfile.mkdtemp(), "feats.h5")
    >>> for rank in (1, 0):
    ...     _ = extract(est, X[:100], sharded, part_size=16, shard=(rank, 2))
    >>> with FeatureStore(sharded) as store:
    ...     store.complete, store.ids[:].tolist() == list(range(100)), len(store.parts)
    (True, True, 7)
    """
    check_is_fitted(estimator, "modules_")
    _check_params(part_size, batch_size, dtype, compression, resume)
    shard = resolve_shard(shard, resume=resume)
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
    rank, world = shard or (0, 1)
    quiet = ((estimator.verbose if verbose is None else verbose) == 0 or rank != 0
             or not sys.stderr.isatty())
    # Shards share the index: they read and rewrite it under a short lock.
    index_lock = (lambda: store_parts.index_locked(path)) if shard else contextlib.nullcontext
    with store_parts.locked(path, shard):
        with index_lock():
            done, stale, part_size, existing = _reconcile(
                path, identity, part_size, resume,
                clean=True if shard is None else (lambda k: k % world == rank))
            meta["created"] = (existing or {}).get("created") or next(
                (p.info["created"] for p in done.values() if p.info.get("created")),
                meta["created"])
            if shard is not None and existing is not None:
                # Every shard keeps the metadata of the first; "completed" comes when it is.
                meta = {k: v for k, v in existing.items() if k != "completed"}
            n_parts = math.ceil(n / part_size)
            todo = [k for k in range(n_parts) if k not in done and k % world == rank]
            # The first shard writes the index at once: the next ones take its part size.
            if (stale and not todo) or (shard is not None and existing is None):
                _write_index(path, done, meta, part_size, n_parts, n)
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
                with index_lock():
                    if shard is not None:  # add the parts the other shards committed
                        done = _committed(path, done, identity, part_size)
                    _write_index(path, done, meta, part_size, n_parts, n)
                bar.update(sum(p.rows for p in done.values()) - bar.n)
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


def _reconcile(path: Path, identity: dict[str, Any], part_size: int, resume: bool,
               clean: bool | Callable[[int], bool]
               ) -> tuple[dict[int, store_parts.Part], bool, int, dict[str, Any] | None]:
    """What is already extracted at ``path``: the committed parts by number, whether the
    index must be rewritten, the part size and the index's metadata (None without an
    index). Refuses anything else. ``clean`` says which half-written parts to delete."""
    existing, layout = _existing_index(path)
    committed = store_parts.scan(path, clean=clean)
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
    for part in committed:
        _check_place(part, part_size, identity["n_samples"])
    listed = [] if layout is None else [p["name"] for p in layout["parts"]]
    stale = existing is None or listed != [p.path.name for p in committed]
    return {p.index: p for p in committed}, stale, part_size, existing


def _committed(path: Path, done: dict[int, store_parts.Part], identity: dict[str, Any],
               part_size: int) -> dict[int, store_parts.Part]:
    """``done`` and the parts other shards committed since, checked like those at the start."""
    out = {}
    for part in store_parts.scan(path, known=done):
        if part.index not in done:
            _check_identity(path, part.info, identity)
            _check_place(part, part_size, identity["n_samples"])
        out[part.index] = part
    return out


def _check_place(part: store_parts.Part, part_size: int, n: int) -> None:
    if (part.start, part.stop) != (part.index * part_size, min(n, (part.index + 1) * part_size)):
        raise InputError(f"The part {part.path} holds rows {part.start}..{part.stop}, "
                         f"which do not fit parts of {part_size} rows; remove it and run "
                         f"the extraction again to redo it.")


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


def resolve_shard(shard: Any, *, resume: bool = True) -> tuple[int, int] | None:
    """``extract``'s ``shard`` as (rank, world_size), or None for a plain extraction.

    Raises a :class:`ParameterError` saying what is wrong; ``"env"`` is read
    from ``RANK`` and ``WORLD_SIZE``.
    """
    if shard is None:
        return None
    if isinstance(shard, str) and shard == "env":
        try:
            shard = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
        except (KeyError, ValueError):
            raise ParameterError(
                f"shard='env' reads RANK and WORLD_SIZE from the environment (torchrun sets "
                f"them), but they are {os.environ.get('RANK')!r} and "
                f"{os.environ.get('WORLD_SIZE')!r}; launch with torchrun, or pass "
                f"shard=(rank, world_size).") from None
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shard)
          and 0 <= shard[0] < shard[1])
    if not ok:
        raise ParameterError(f"The 'shard' parameter of extract must be (rank, world_size) "
                             f"with 0 <= rank < world_size, or 'env'. Got {shard!r} instead.")
    if not resume:
        raise ParameterError("A shard joins the store the other shards write, so extract "
                             "needs resume=True with shard=.")
    if store_parts.fcntl is None:
        raise ParameterError("Sharded extraction needs POSIX file locks (fcntl), which this "
                             "system lacks; extract in one process (shard=None).")
    return int(shard[0]), int(shard[1])


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
