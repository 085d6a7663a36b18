"""Nearest-neighbour search over feature vectors with FAISS: :class:`FeatureIndex`.

One estimator covers the four index kinds worth choosing between: ``"flat"``
(exact), ``"ivf"`` (inverted lists over k-means cells), ``"hnsw"`` (a graph;
no training, CPU only) and ``"ivfpq"`` (inverted lists of product-quantized
codes, for collections that must be compressed to fit in memory). Their
build-time knobs default to ``"auto"``, resolved by :func:`auto_nlist` and
:func:`auto_pq_m`. The search effort (``nprobe``, ``efSearch``) defaults to
what reaches ``target_recall`` on the data itself: ``fit`` measures it on a
sample of the indexed vectors (:mod:`featurekit.index_tuning`).

What ``search`` reports, per ``metric``:

- ``"cosine"``: the rows are L2-normalized (copies; the caller's arrays are
  never modified) and searched by inner product, so the scores are cosine
  similarities in [-1, 1], largest first. IVF's k-means is then spherical.
- ``"l2"``: plain Euclidean distances (faiss computes squares; their root is
  reported, as scikit-learn does), smallest first.
- ``"ip"``: raw inner products, largest first.

A query for which the index finds fewer than ``k`` vectors (possible with
``"ivf"``/``"ivfpq"`` when the probed lists hold fewer than ``k``, rarely with
``"hnsw"``) has its missing entries marked: id ``-1``, key ``None``, and the
worst score (``inf`` for ``"l2"``, ``-inf`` otherwise), so rows stay sorted.

Files: ``save`` writes a plain faiss index file (``faiss.read_index`` reads
it) followed by the ids, a JSON trailer (parameters, keys, metadata) and a
fixed footer, atomically; nothing is pickled.

On the GPU, faiss limits ``k`` and ``nprobe`` to 2048.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from featurekit import index_tuning as tuning
from featurekit.assembly import resolve_device
from featurekit.exceptions import InputError, NotFittedError, ParameterError
from featurekit.store import commit_file, store_error

__all__ = ["FeatureIndex", "auto_nlist", "auto_pq_m"]

# faiss's k-means warns below 39 training points per centroid and uses at most
# 256 (it subsamples above); the auto rules and the training sample follow it.
MIN_POINTS_PER_CENTROID = 39
MAX_POINTS_PER_CENTROID = 256

# Training points per PQ code (faiss uses up to 256; see _new_index for why fewer).
PQ_POINTS_PER_CODE = 64

# faiss's GPU indexes search at most this many lists per query.
GPU_MAX_NPROBE = 2048

# Rows converted, normalized and added at a time: bounds the extra memory of a
# float64 or cosine input to ~32 MiB at 128 features instead of a full copy.
_BLOCK_ROWS = 65536

_FORMAT = "featurekit-index"
_FORMAT_VERSION = 2
_MAGIC = b"FKINDEX1"
_FOOTER = struct.Struct("<QQ8s")  # ids bytes, JSON bytes, magic


def auto_nlist(n_samples: int) -> int:
    """Inverted lists for ``n_samples`` training vectors: about ``4 * sqrt(n)``.

    Bounded above so that every list gets at least 39 training points
    (faiss's minimum for a stable k-means) and below by 1.

    Examples
    --------
    >>> auto_nlist(100_000), auto_nlist(1_000), auto_nlist(20)
    (1265, 25, 1)
    """
    return max(1, min(round(4 * math.sqrt(n_samples)), n_samples // MIN_POINTS_PER_CENTROID))


def auto_pq_m(n_features: int) -> int:
    """PQ sub-quantizers: the largest divisor of ``n_features`` up to ``n_features / 4``.

    With 8-bit codes that stores one byte per four features, 16x smaller than
    float32, which keeps recall usable for ranking (a divisor is required).

    Examples
    --------
    >>> auto_pq_m(128), auto_pq_m(100), auto_pq_m(3)
    (32, 25, 1)
    """
    limit = max(1, n_features // 4)
    return max(m for m in range(1, limit + 1) if n_features % m == 0)


class FeatureIndex(BaseEstimator):
    """A FAISS index of feature vectors with ids and optional string keys.

    Parameters
    ----------
    kind : {"flat", "ivf", "hnsw", "ivfpq"}, default="flat"
        ``"flat"`` is exact; the others trade recall for speed (``"ivfpq"``
        also for memory). ``"ivf"`` and ``"ivfpq"`` are trained by ``fit``.
    metric : {"cosine", "l2", "ip"}, default="cosine"
        See the module docstring for what ``search`` reports.
    nlist : "auto" or int, default="auto"
        Inverted lists of ``"ivf"``/``"ivfpq"`` (:func:`auto_nlist` of the
        ``fit`` rows).
    nprobe : "auto" or int, default="auto"
        Lists visited per query; ``"auto"`` is ``nprobe_``, the fewest that
        reach ``target_recall`` on the fitted data. Read at search time, so
        ``set_params(nprobe=...)`` on a fitted index takes effect at once.
    hnsw_m : int, default=32
        Graph neighbours per node of ``"hnsw"``.
    ef_construction : int, default=40
        HNSW's candidate-list size while building (faiss's default).
    ef_search : "auto" or int, default="auto"
        HNSW's candidate-list size at search; ``"auto"`` is ``ef_search_``
        (the smallest reaching ``target_recall`` at k=10), scaled up in
        proportion for larger ``k``. Read at search time, like ``nprobe``.
    target_recall : float in (0, 1], default=0.95
        The recall@10 against exact search that ``fit`` tunes ``nprobe_``
        and ``ef_search_`` for, measured on up to 256 indexed vectors used as
        queries (each itself left out). Held-out queries can score a little
        lower (see :mod:`featurekit.index_tuning`); raise it, or set
        ``nprobe``/``ef_search``, for a margin. ``"ivfpq"`` often cannot
        reach it, its codes being lossy: it then gets the least effort at
        which recall stops growing (``calibrated_recall_`` says what that is).
    pq_m : "auto" or int, default="auto"
        Sub-quantizers of ``"ivfpq"`` (:func:`auto_pq_m`); must divide the
        number of features.
    pq_nbits : int, default=8
        Bits per sub-quantizer code; training needs at least ``2**pq_nbits``
        rows.
    pq_rotation : {"random", "opq"}, default="random"
        The rotation ``"ivfpq"`` applies before quantizing. ``"random"``
        spreads the variance evenly over the sub-vectors; ``"opq"`` learns
        the rotation that minimizes the quantization error (Ge et al.,
        Optimized Product Quantization, 2013), usually more recall at the
        same code size for a slower ``fit``. Ignored by the other kinds.
    device : str or torch.device, default="auto"
        ``"auto"`` uses the GPU when torch sees one and faiss has GPU support
        (faiss-gpu), else the CPU; ``"cuda:N"`` asks for a GPU (the CPU, with
        a warning, under faiss-cpu). ``"hnsw"`` always runs on the CPU: faiss
        has no GPU HNSW.
    random_state : int, RandomState instance or None, default=None
        Seeds k-means (and its training sample) and HNSW's level draws.
        HNSW graphs built with several threads still vary from run to run.

    Attributes
    ----------
    index_ : faiss.Index
        The faiss index (on the GPU when ``device_`` is one).
    n_features_in_ : int
        Dimension of the indexed vectors.
    ids_ : ndarray of shape (ntotal,)
        The int64 ids in the index, in insertion order.
    keys_ : ndarray of object of shape (ntotal,) or None
        The key of each id in ``ids_``, when keys were given.
    nlist_, pq_m_ : int or None
        The resolved ``nlist`` and ``pq_m`` (None where the kind has none).
    nprobe_, ef_search_ : int or None
        The calibrated search effort of ``"ivf"``/``"ivfpq"`` and of
        ``"hnsw"`` (None where the kind has none).
    calibrated_recall_ : float or None
        The recall@10 measured at that effort (None for ``"flat"``, which is
        exact, and for indexes too small to measure).
    device_ : str
        ``"cpu"`` or ``"cuda:N"``.
    metadata_ : dict
        What ``save(metadata=...)`` stored; empty after ``fit``.

    See Also
    --------
    featurekit.neighbors.FaissKNeighborsClassifier : kNN classification on faiss.
    featurekit.neighbors.FaissKNeighborsTransformer : kNN graphs on faiss.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> index = FeatureIndex(metric="l2").fit(X, keys=["a.png", "b.png", "c.png"])
    >>> distances, ids = index.search([[0.9, 0.1]], k=2)
    >>> print(ids, distances.round(3))
    [[0 2]] [[0.141 0.906]]
    >>> index.search([[0.9, 0.1]], k=2, return_keys=True)[1].tolist()
    [['a.png', 'c.png']]
    """

    _parameter_constraints: dict = {
        "kind": [StrOptions({"flat", "ivf", "hnsw", "ivfpq"})],
        "metric": [StrOptions({"cosine", "l2", "ip"})],
        "nlist": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "nprobe": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "hnsw_m": [Interval(Integral, 2, None, closed="left")],
        "ef_construction": [Interval(Integral, 1, None, closed="left")],
        "ef_search": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "pq_m": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "pq_nbits": [Interval(Integral, 1, 16, closed="both")],
        "pq_rotation": [StrOptions({"random", "opq"})],
        "target_recall": [Interval(Real, 0, 1, closed="right")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(self, kind: str = "flat", *, metric: str = "cosine",
                 nlist: int | str = "auto", nprobe: int | str = "auto", hnsw_m: int = 32,
                 ef_construction: int = 40, ef_search: int | str = "auto",
                 pq_m: int | str = "auto", pq_nbits: int = 8, pq_rotation: str = "random",
                 target_recall: float = 0.95, device: str = "auto",
                 random_state: Any = None) -> None:
        self.kind = kind
        self.metric = metric
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.pq_m = pq_m
        self.pq_nbits = pq_nbits
        self.pq_rotation = pq_rotation
        self.target_recall = target_recall
        self.device = device
        self.random_state = random_state

    # -- building ------------------------------------------------------------
    def fit(self, X: Any, *, ids: ArrayLike | None = None,
            keys: Sequence[str] | None = None) -> FeatureIndex:
        """Build a new index (training it if the kind needs it) and add ``X``.

        Parameters
        ----------
        X : array-like, torch tensor or h5py dataset of shape (n_samples, n_features)
            The vectors; an h5py dataset is read block by block.
        ids : array-like of int of shape (n_samples,), optional
            Distinct non-negative ids (faiss marks "no result" with -1);
            ``0 .. n_samples - 1`` by default.
        keys : sequence of str of length n_samples, optional
            A string per vector, such as its file path, for
            ``search(..., return_keys=True)``. Then every ``add`` needs keys.

        Returns
        -------
        self : FeatureIndex
        """
        self._validate_params()
        rows = _Rows(X, "X")
        n, d = rows.shape
        new_ids, new_keys = _check_entries(n, ids, keys, np.empty(0, np.int64), None, False)
        device = _resolve_device(self.device, self.kind)
        nlist = self._resolve_nlist(n) if self.kind in ("ivf", "ivfpq") else None
        pq_m = self._resolve_pq_m(d, n) if self.kind == "ivfpq" else None
        index = self._new_index(d, nlist, pq_m)
        if not index.is_trained:
            index.train(self._training_sample(rows, nlist))
        if self.kind == "ivfpq" and self.pq_rotation == "opq":
            # Only training used OPQ's own PQ; no copy of the index may point to it.
            faiss.downcast_VectorTransform(index.chain.at(0)).pq = None
        # Only now that nothing can fail does a refit replace the fitted state.
        self.index_ = _place(index, device)
        self.device_, self.nlist_, self.pq_m_, self.n_features_in_ = device, nlist, pq_m, d
        self.ids_ = np.empty(0, np.int64)
        self.keys_ = None if keys is None else np.empty(0, object)
        self.metadata_ = {}
        self._add_rows(rows, new_ids, new_keys)
        self._calibrate(rows, new_ids)
        return self

    def add(self, X: Any, *, ids: ArrayLike | None = None,
            keys: Sequence[str] | None = None) -> FeatureIndex:
        """Add vectors to a fitted index (an IVF index keeps its trained cells).

        ``X`` is checked whole before anything is added, so a bad row leaves
        the index as it was.

        Parameters
        ----------
        X : array-like, torch tensor or h5py dataset of shape (n_rows, n_features_in_)
            The vectors.
        ids : array-like of int of shape (n_rows,), optional
            Distinct ids not yet in the index; by default the integers after
            the largest id present.
        keys : sequence of str of length n_rows, optional
            Required exactly when the index has keys.

        Returns
        -------
        self : FeatureIndex
        """
        self._check_fitted()
        rows = _Rows(X, "X", n_features=self.n_features_in_)
        new_ids, new_keys = _check_entries(rows.n, ids, keys, self.ids_, self.keys_, True)
        self._add_rows(rows, new_ids, new_keys)
        return self

    def remove(self, ids: ArrayLike) -> FeatureIndex:
        """Remove vectors by id (``"flat"``, ``"ivf"``, ``"ivfpq"``).

        Parameters
        ----------
        ids : array-like of int
            Ids present in the index.

        Returns
        -------
        self : FeatureIndex

        Raises
        ------
        ParameterError
            For ``kind="hnsw"``: faiss cannot delete from an HNSW graph.
        InputError
            If an id is not in the index; nothing is removed then.
        """
        self._check_fitted()
        if self.kind == "hnsw":
            raise ParameterError(
                "A kind='hnsw' index cannot remove vectors: faiss's HNSW graph does not "
                "support deletion. Rebuild it without them (fit(X[keep], ids=ids[keep])), "
                "or use kind='flat' or 'ivf', which can remove.")
        gone = np.unique(_as_ids(ids, "ids"))
        unknown = gone[~np.isin(gone, self.ids_)]
        if unknown.size:
            raise InputError(f"ids {unknown[:5].tolist()} are not in the index; nothing was "
                             "removed.")
        # faiss's GPU indexes cannot remove: edit a CPU copy and move it back.
        index = _to_cpu(self.index_)
        index.remove_ids(gone)
        self.index_ = _place(index, self.device_) if index is not self.index_ else index
        keep = ~np.isin(self.ids_, gone)
        self.ids_ = self.ids_[keep]
        self.keys_ = None if self.keys_ is None else self.keys_[keep]
        self._id_order = None
        return self

    @property
    def ntotal(self) -> int:
        """Number of vectors in the index (0 before ``fit``)."""
        return int(self.index_.ntotal) if hasattr(self, "index_") else 0

    def __len__(self) -> int:
        return self.ntotal

    # -- searching -----------------------------------------------------------
    def search(self, Q: Any, k: int = 10, *,
               return_keys: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed vectors of each query, best first.

        Parameters
        ----------
        Q : array-like or torch tensor of shape (n_queries, n_features_in_)
            The queries, from the same extractor as the indexed vectors.
        k : int, default=10
            Neighbours per query; at most the number of vectors indexed.
        return_keys : bool, default=False
            Return the neighbours' keys instead of their ids.

        Returns
        -------
        scores : ndarray of float32 of shape (n_queries, k)
            Cosine similarities, Euclidean distances or inner products (see
            the module docstring); ``inf``/``-inf`` marks a missing result.
        ids : ndarray of int64 of shape (n_queries, k)
            The neighbours' ids, ``-1`` where missing; with
            ``return_keys=True`` an object array of keys, ``None`` where missing.
        """
        self._check_fitted()
        self._check_search_params()
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise InputError(f"k must be a positive integer; got {k!r}.")
        if self.ntotal == 0:
            raise InputError("The index is empty (every vector was removed); add vectors "
                             "with add(X) before searching.")
        if k > self.ntotal:
            raise InputError(f"k={k} is larger than the index, which holds {self.ntotal} "
                             f"vectors; ask for k <= {self.ntotal}.")
        if return_keys and self.keys_ is None:
            raise InputError("This index has no keys; pass keys= to fit() and add() to get "
                             "them back, or search with return_keys=False for ids.")
        queries = self._prepare(*_Rows(Q, "Q", n_features=self.n_features_in_).whole())
        scores, found = self.index_.search(queries, int(k), params=self._search_parameters(k))
        missing = found < 0
        if self.metric == "l2":
            scores = np.sqrt(np.maximum(scores, 0), out=scores)
        scores[missing] = np.inf if self.metric == "l2" else -np.inf
        if not return_keys:
            return scores, found
        return scores, self._keys_of(found, missing)

    # -- persistence ---------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *,
             metadata: Mapping[str, Any] | None = None) -> Path:
        """Write the index to ``path`` atomically: old file or new, never half.

        The file is a faiss index (``faiss.read_index`` reads it as it is)
        followed by the ids, a JSON trailer with the parameters, keys and
        metadata, and a footer. It is written to a temporary file beside
        ``path``, synced and renamed over it.

        Parameters
        ----------
        path : str or path-like
            The file to create or replace.
        metadata : mapping, optional
            JSON-encodable facts to keep with the index, such as the model
            that made the features (read back as ``metadata_``); by default
            the ``metadata_`` the index already has.

        Returns
        -------
        Path
            ``path``.

        Raises
        ------
        StoreError
            If the disk refuses the write (full, read-only); ``path`` is
            left as it was. It is an ``OSError`` with the system's ``errno``.
        """
        self._check_fitted()
        metadata = dict(self.metadata_ if metadata is None else metadata)
        path = Path(path)
        params = self.get_params()
        params["device"] = str(params["device"])
        state = params["random_state"]
        # A RandomState instance has no JSON form; the fitted index no longer needs it.
        params["random_state"] = int(state) if isinstance(state, Integral) else None
        try:
            meta = json.dumps({
                "format": _FORMAT, "version": _FORMAT_VERSION, "params": params,
                "n_features_in_": self.n_features_in_, "nlist_": self.nlist_,
                "pq_m_": self.pq_m_, "nprobe_": self.nprobe_, "ef_search_": self.ef_search_,
                "calibrated_recall_": self.calibrated_recall_, "metadata": metadata,
                "keys": None if self.keys_ is None else self.keys_.tolist(),
            }, default=_json_default).encode()
        except (TypeError, ValueError) as exc:
            raise InputError(f"metadata cannot be saved as JSON: {exc}") from None
        ids = self.ids_.astype("<i8").tobytes()
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                faiss.write_index(_to_cpu(self.index_), tmp)
            except RuntimeError as exc:  # how faiss reports a failed write
                raise OSError(None, f"faiss could not write it ({exc})") from exc
            with open(tmp, "ab") as f:
                f.write(ids)
                f.write(meta)
                f.write(_FOOTER.pack(len(ids), len(meta), _MAGIC))
            commit_file(Path(tmp), path)
        except BaseException as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise store_error(exc, f"write the index {path}",
                                  "Any file that was there is unchanged.") from exc
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | None = None) -> FeatureIndex:
        """Read an index written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            The file.
        device : str, optional
            Overrides the saved ``device`` (say ``"cpu"`` to load a GPU
            machine's index elsewhere).

        Returns
        -------
        FeatureIndex
            Fitted, ready to search.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"No index at {path}: the file does not exist.")
        meta, ids = _read_trailer(path)
        params = meta["params"] if device is None else {**meta["params"], "device": device}
        est = cls(**params)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise InputError(f"Cannot read the faiss index in {path}: {exc}") from None
        est.device_ = _resolve_device(est.device, est.kind)
        est.index_ = _place(index, est.device_)
        est.n_features_in_, est.nlist_, est.pq_m_ = (
            meta["n_features_in_"], meta["nlist_"], meta["pq_m_"])
        if "nprobe_" in meta:
            est.nprobe_, est.ef_search_, est.calibrated_recall_ = (
                meta["nprobe_"], meta["ef_search_"], meta["calibrated_recall_"])
        else:  # format 1 predates calibration: its fixed rules
            nlist = est.nlist_
            est.nprobe_ = None if nlist is None else min(nlist, max(16, math.ceil(nlist / 64)))
            est.ef_search_ = 40 if est.kind == "hnsw" else None
            est.calibrated_recall_ = None
        est.ids_ = ids
        est.keys_ = None if meta["keys"] is None else np.array(meta["keys"], dtype=object)
        est.metadata_ = meta.get("metadata") or {}
        return est

    def __getstate__(self) -> dict:
        # Pickle (clone, joblib) carries faiss's own serialization, not the SWIG object.
        state = dict(super().__getstate__())
        state.pop("_id_order", None)
        if "index_" in state:
            state["index_"] = faiss.serialize_index(_to_cpu(state["index_"]))
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "index_" in state:
            # The pickle may come from a GPU machine: place it where this one allows.
            self.device_ = _resolve_device(self.device, self.kind, strict=False)
            self.index_ = _place(faiss.deserialize_index(state["index_"]), self.device_)

    # -- internals -----------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "index_"):
            raise NotFittedError("This FeatureIndex is not fitted yet; call fit(X) first, or "
                                 "FeatureIndex.load(path).")

    def _check_search_params(self) -> None:
        # set_params may have changed them since fit. Validating every parameter
        # costs 0.2 ms, as much as a small search, so only these two are checked
        # here and sklearn's validation words the error.
        for value in (self.nprobe, self.ef_search):
            if not (isinstance(value, str) and value == "auto" or isinstance(value, Integral)
                    and not isinstance(value, bool) and value >= 1):
                self._validate_params()

    def _resolve_nlist(self, n: int) -> int:
        nlist = auto_nlist(n) if self.nlist == "auto" else int(self.nlist)
        if nlist > n:
            raise InputError(f"nlist={nlist} needs at least {nlist} vectors to train its "
                             f"k-means; X has {n}. Use nlist='auto' or more data.")
        if n < MIN_POINTS_PER_CENTROID * nlist:
            warnings.warn(f"nlist={nlist} leaves fewer than {MIN_POINTS_PER_CENTROID} training "
                          f"vectors per list ({n} in all), so the cells are noisy and recall "
                          "suffers; nlist='auto' avoids it.", UserWarning, stacklevel=3)
        return nlist

    def _resolve_pq_m(self, d: int, n: int) -> int:
        pq_m = auto_pq_m(d) if self.pq_m == "auto" else int(self.pq_m)
        if d % pq_m:
            divisors = [m for m in range(1, d + 1) if d % m == 0]
            raise ParameterError(f"The 'pq_m' parameter of FeatureIndex must divide the number "
                                 f"of features ({d}), one of {divisors}. Got {pq_m} instead.")
        if n < 2 ** self.pq_nbits:
            raise InputError(f"kind='ivfpq' with pq_nbits={self.pq_nbits} needs at least "
                             f"{2 ** self.pq_nbits} vectors to train; X has {n}. Use a smaller "
                             "pq_nbits, or kind='ivf'.")
        return pq_m

    def _new_index(self, d: int, nlist: int | None, pq_m: int | None) -> faiss.Index:
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        description = {
            "flat": "IDMap,Flat",
            "hnsw": f"IDMap,HNSW{self.hnsw_m},Flat",
            "ivf": f"IVF{nlist},Flat",
            # RR: a random rotation first spreads the variance, which real features
            # pile into few dimensions, evenly over the PQ sub-vectors (recall@10
            # 0.33 -> 0.55 on the benchmark); OPQ learns the rotation instead.
            # "np": no polysemous training, which serves binary-code filtering
            # (unused) and made training ~8x slower.
            "ivfpq": f"{'OPQ' + str(pq_m) if self.pq_rotation == 'opq' else 'RR' + str(d)},"
                     f"IVF{nlist},PQ{pq_m}x{self.pq_nbits}np",
        }[self.kind]
        index = faiss.index_factory(d, description, metric)
        seed = _seed(self.random_state)
        if self.kind == "hnsw":
            hnsw = faiss.downcast_index(index.index).hnsw
            hnsw.efConstruction = int(self.ef_construction)
            hnsw.rng = faiss.RandomGenerator(seed)
        elif self.kind in ("ivf", "ivfpq"):
            ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
            clusterings = [ivf.cp] + ([ivf.pq.cp] if self.kind == "ivfpq" else [])
            if self.kind == "ivfpq" and self.pq_rotation == "opq":
                # OPQ fits its rotation with a PQ of its own (8-bit and faiss's defaults
                # unless given one): give it this index's code size and settings.
                opq_pq = faiss.ProductQuantizer(d, pq_m, int(self.pq_nbits))
                faiss.downcast_VectorTransform(index.chain.at(0)).pq = opq_pq
                index.referenced_objects = [opq_pq]  # OPQ holds a bare pointer to it
                clusterings.append(opq_pq.cp)
            for cp in clusterings:
                cp.seed = seed
                # Our own checks above warn in Python; faiss would print to stderr again.
                cp.min_points_per_centroid = 1
            if self.kind == "ivfpq":
                # Each sub-quantizer's k-means runs in a few dimensions, where faiss is
                # memory-bound; 64 points per code (not 256) cut its time 4x.
                for cp in clusterings[1:]:
                    cp.max_points_per_centroid = PQ_POINTS_PER_CODE
            # Normalized vectors scored by inner product want unit-norm centroids.
            ivf.cp.spherical = self.metric == "cosine"
        return index

    def _training_sample(self, rows: _Rows, nlist: int) -> np.ndarray:
        # faiss trains on at most 256 points per centroid; reading only those
        # keeps an h5py input out of memory.
        cap = max(MAX_POINTS_PER_CENTROID * nlist,
                  PQ_POINTS_PER_CODE * 2 ** self.pq_nbits if self.kind == "ivfpq" else 0)
        if rows.n <= cap:
            return self._prepare(*rows.whole())
        rng = np.random.default_rng(_seed(self.random_state))
        chosen = np.sort(rng.choice(rows.n, cap, replace=False))
        return self._prepare(*rows.take(chosen))

    def _prepare(self, block: np.ndarray, owned: bool) -> np.ndarray:
        if self.metric == "cosine":
            block = block if owned else block.copy()
            faiss.normalize_L2(block)
        return block

    def _add_rows(self, rows: _Rows, ids: np.ndarray, keys: np.ndarray | None) -> None:
        if rows.lazy:  # check every block before adding any (in memory, _Rows did)
            for _ in rows.blocks():
                pass
        for start, block, owned in rows.blocks():
            self.index_.add_with_ids(self._prepare(block, owned), ids[start:start + len(block)])
        self.ids_ = np.concatenate([self.ids_, ids])
        if keys is not None:
            self.keys_ = np.concatenate([self.keys_, keys])
        self._id_order = None

    def _calibrate(self, rows: _Rows, ids: np.ndarray) -> None:
        """Set ``nprobe_``/``ef_search_`` to the least effort reaching ``target_recall``."""
        self.nprobe_ = self.ef_search_ = self.calibrated_recall_ = None
        if self.kind == "flat":
            return
        k = min(tuning.CALIBRATION_K, rows.n - 1)
        if k < 1:  # a single vector: any setting finds it
            if self.kind == "hnsw":
                self.ef_search_ = 1
            else:
                self.nprobe_ = self.nlist_
            return
        rng = np.random.default_rng(_seed(self.random_state))
        chosen = np.sort(rng.choice(rows.n, min(tuning.CALIBRATION_QUERIES, rows.n),
                                    replace=False))
        queries = self._prepare(*rows.take(chosen))
        truth = tuning.exact_neighbours((self._prepare(b, owned) for _, b, owned in rows.blocks()),
                                        queries, k + 1, largest=self.metric != "l2")
        truth = np.where(truth >= 0, ids[np.maximum(truth, 0)], -1)
        if self.kind == "hnsw":
            grid = tuning.ef_search_grid(k)
            params = lambda value: faiss.SearchParametersHNSW(efSearch=value)  # noqa: E731
        else:
            limit = GPU_MAX_NPROBE if _on_gpu(self.index_) else self.nlist_
            grid = sorted({min(p, limit) for p in tuning.nprobe_grid(self.nlist_)})
            params = lambda value: faiss.SearchParametersIVF(nprobe=value)  # noqa: E731
        value, recall, _ = tuning.calibrate(
            lambda q, kk, v: self.index_.search(q, kk, params=params(v))[1], grid, queries,
            ids[chosen], truth, k, self.target_recall)
        if self.kind == "hnsw":
            self.ef_search_ = value
        else:
            self.nprobe_ = value
        self.calibrated_recall_ = recall

    def _search_parameters(self, k: int) -> faiss.SearchParameters | None:
        if self.kind in ("ivf", "ivfpq"):
            nprobe = self.nprobe_ if self.nprobe == "auto" else int(self.nprobe)
            return faiss.SearchParametersIVF(nprobe=min(nprobe, self.nlist_))
        if self.kind == "hnsw":
            if self.ef_search == "auto":  # calibrated at k=10: grow with k
                ef = max(self.ef_search_, math.ceil(self.ef_search_ * k / tuning.CALIBRATION_K))
            else:
                ef = int(self.ef_search)
            return faiss.SearchParametersHNSW(efSearch=ef)
        return None

    def _keys_of(self, found: np.ndarray, missing: np.ndarray) -> np.ndarray:
        if getattr(self, "_id_order", None) is None:
            self._id_order = np.argsort(self.ids_, kind="stable")
        where = np.searchsorted(self.ids_, found, sorter=self._id_order)
        positions = self._id_order[np.minimum(where, len(self.ids_) - 1)]
        keys = self.keys_[positions]
        keys[missing] = None
        return keys


class _Rows:
    """A 2-D input as float32 rows: numpy, torch and lists in memory, h5py read lazily.

    Finite values are checked on construction in memory, and block by block
    when read lazily. ``owned`` says whether the float32 rows are a copy,
    which normalization may then modify in place.
    """

    def __init__(self, X: Any, name: str, n_features: int | None = None) -> None:
        self.name = name
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu()
            X = (X.float() if X.dtype in (torch.float16, torch.bfloat16) else X).numpy()
        self.lazy = not isinstance(X, np.ndarray) and all(
            hasattr(X, a) for a in ("shape", "dtype", "__getitem__"))
        try:
            data = X if self.lazy else np.asarray(X)
        except ValueError as exc:  # ragged nested lists
            raise InputError(f"{name} must be a 2-D array of numbers: {exc}") from None
        if len(data.shape) != 2:
            hint = " (one query: reshape(1, -1))" if len(data.shape) == 1 else ""
            raise InputError(f"{name} must be 2-D of shape (n_samples, n_features); got shape "
                             f"{tuple(data.shape)}{hint}.")
        if np.dtype(data.dtype).kind not in "iuf":
            raise InputError(f"{name} must hold real numbers; got dtype {data.dtype}.")
        self.n, width = int(data.shape[0]), int(data.shape[1])
        if width == 0:
            raise InputError(f"{name} has no columns (shape ({self.n}, 0)).")
        if n_features is not None and width != n_features:
            raise InputError(f"{name} has {width} features but the index holds {n_features}-d "
                             "vectors; use features from the same extractor.")
        if self.n == 0:
            raise InputError(f"{name} has no rows; give at least one vector.")
        self.shape = (self.n, width)
        self.source = data
        if not self.lazy:
            with np.errstate(over="ignore"):  # overflow becomes inf, reported with its row
                self.data = np.ascontiguousarray(data, dtype=np.float32)
            self.owned = not np.may_share_memory(self.data, data)
            _check_finite(self.data, name, 0)

    def blocks(self) -> Iterator[tuple[int, np.ndarray, bool]]:
        """``(start, rows, owned)`` for consecutive blocks of rows."""
        for start in range(0, self.n, _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, self.n)
            if not self.lazy:
                yield start, self.data[start:stop], self.owned
                continue
            with np.errstate(over="ignore"):
                block = np.ascontiguousarray(self.source[start:stop], dtype=np.float32)
            _check_finite(block, self.name, start)
            yield start, block, True

    def whole(self) -> tuple[np.ndarray, bool]:
        if self.lazy:
            return np.concatenate([block for _, block, _ in self.blocks()]), True
        return self.data, self.owned

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, bool]:
        """The given sorted rows, as an owned copy."""
        if not self.lazy:
            return self.data[rows], True
        # One sequential pass: h5py's point selection of many rows is far slower.
        parts = []
        for start, block, _ in self.blocks():
            inside = rows[(rows >= start) & (rows < start + len(block))]
            parts.append(block[inside - start])
        return np.concatenate(parts), True


def _check_finite(block: np.ndarray, name: str, offset: int) -> None:
    # A float64 sum of float32 values cannot overflow, so it is finite exactly
    # when every value is: one pass and no temporary array in the common case.
    if np.isfinite(block.sum(dtype=np.float64)):
        return
    row = offset + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
    raise InputError(f"{name} has NaN or infinite values (first in row {row}, or values beyond "
                     "the float32 range); drop or impute those rows first.")


def _as_ids(ids: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1:
        raise InputError(f"{name} must be 1-D; got shape {array.shape}.")
    if array.size and (array.dtype == bool or array.dtype.kind not in "iu"):
        raise InputError(f"{name} must be integers; got dtype {array.dtype}.")
    return array.astype(np.int64)


def _check_entries(n: int, ids: ArrayLike | None, keys: Sequence[str] | None,
                   present: np.ndarray, present_keys: np.ndarray | None,
                   adding: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if ids is None:
        first = int(present.max()) + 1 if present.size else 0
        new_ids = np.arange(first, first + n, dtype=np.int64)
    else:
        new_ids = _as_ids(ids, "ids")
        if len(new_ids) != n:
            raise InputError(f"ids has {len(new_ids)} entries but X has {n} rows.")
        if new_ids.size and new_ids.min() < 0:
            raise InputError("ids must be >= 0: faiss marks a missing result with -1.")
        values, counts = np.unique(new_ids, return_counts=True)
        taken = np.union1d(values[counts > 1], values[np.isin(values, present)])
        if taken.size:
            raise InputError(f"ids must be distinct and new to the index; {taken[:5].tolist()} "
                             "repeat.")
    if adding and (keys is None) != (present_keys is None):
        need = "has keys, so add() needs keys=" if keys is None else "has no keys; drop keys="
        raise InputError(f"The index {need} (keys are given on every add or on none).")
    if keys is None:
        return new_ids, None
    key_array = np.asarray(keys, dtype=object)
    if key_array.ndim != 1 or len(key_array) != n:
        raise InputError(f"keys must be a sequence of {n} str, one per row of X; got shape "
                         f"{key_array.shape}.")
    bad = next((k for k in key_array if not isinstance(k, str)), None)
    if bad is not None:
        raise InputError(f"keys must be str; got {type(bad).__name__} {bad!r}.")
    return new_ids, key_array


def _seed(random_state: Any) -> int:
    if isinstance(random_state, Integral):
        return int(random_state) % (2**31)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _resolve_device(device: Any, kind: str, strict: bool = True) -> str:
    """``"cpu"`` or ``"cuda:N"``; ``strict=False`` (unpickling) never fails."""
    try:
        resolved = resolve_device(device)
    except ParameterError:
        if strict:
            raise
        return "cpu"
    if resolved.type != "cuda":
        return "cpu"  # faiss has no Apple GPU backend
    explicit = device != "auto"
    if faiss.get_num_gpus() == 0:
        if explicit:
            warnings.warn(f"device={device!r} was asked for, but this faiss has no GPU support "
                          "(faiss.get_num_gpus() == 0); the index stays on the CPU. Install "
                          "faiss-gpu to search on the GPU.", UserWarning, stacklevel=3)
        return "cpu"
    if kind == "hnsw":
        if explicit:
            warnings.warn("faiss's HNSW index runs on the CPU only, so this index stays on "
                          "the CPU; kind='ivf' or 'flat' can search on the GPU.",
                          UserWarning, stacklevel=3)
        return "cpu"
    return f"cuda:{resolved.index or 0}"


# One GPU memory pool per device, shared by every index on it (faiss's advice).
@functools.cache
def gpu_resources(device: int) -> Any:
    """faiss's GPU resources (cuBLAS handles, scratch memory) for GPU ``device``,
    made once per process and shared by every index and k-means on it."""
    return faiss.StandardGpuResources()


def _place(index: faiss.Index, device: str) -> faiss.Index:
    if device == "cpu":
        return index
    gpu = int(device[5:])
    try:
        return faiss.index_cpu_to_gpu(gpu_resources(gpu), gpu, index)
    except RuntimeError as exc:
        raise ParameterError(f"faiss cannot move this index to {device}: {exc}. Use "
                             "device='cpu'.") from None


def _to_cpu(index: faiss.Index) -> faiss.Index:
    if hasattr(faiss, "index_gpu_to_cpu") and _on_gpu(index):
        return faiss.index_gpu_to_cpu(index)
    return index


def _on_gpu(index: faiss.Index) -> bool:
    while isinstance(index, (faiss.IndexIDMap, faiss.IndexPreTransform)):
        index = faiss.downcast_index(index.index)
    return type(index).__name__.startswith("Gpu")


def _read_trailer(path: Path) -> tuple[dict, np.ndarray]:
    not_ours = (f"{path} is not a featurekit index (no featurekit trailer); a plain faiss "
                "index loads with faiss.read_index.")
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < _FOOTER.size:
            raise InputError(not_ours)
        f.seek(size - _FOOTER.size)
        n_ids, n_meta, magic = _FOOTER.unpack(f.read(_FOOTER.size))
        if magic != _MAGIC or n_ids + n_meta + _FOOTER.size > size:
            raise InputError(not_ours)
        f.seek(size - _FOOTER.size - n_meta - n_ids)
        ids = np.frombuffer(f.read(n_ids), dtype="<i8").astype(np.int64)
        try:
            meta = json.loads(f.read(n_meta))
        except ValueError:
            meta = None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise InputError(f"{path} has a damaged featurekit trailer; save the index again.")
    if meta.get("version", 0) > _FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer featurekit (index format "
                         f"{meta.get('version')}); upgrade featurekit to read it.")
    return meta, ids


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"metadata value of type {type(value).__name__} cannot be saved as JSON")
