"""k-means on FAISS behind scikit-learn's clustering API.

FAISS runs Lloyd's algorithm with BLAS (or on a GPU) and subsamples large
inputs, so it clusters millions of feature rows in seconds where
``sklearn.cluster.KMeans`` takes minutes. :class:`FaissKMeans` keeps
``KMeans``'s names, attributes and verbs, so it drops into the same code, and
adds ``spherical=True`` for the cosine geometry that learned features live in.

Only plain values are stored on the estimator (no FAISS index), so it clones,
pickles and moves between machines with and without a GPU.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import faiss
import h5py
import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import validate_data

from featurekit.assembly import resolve_device
from featurekit.exceptions import InputError, NotFittedError, ParameterError
from featurekit.index import gpu_resources

__all__ = ["FaissKMeans"]

# Rows per block when the exact inertia is summed, to bound the temporary
# difference array to about 16 MiB whatever n_samples is.
_BLOCK_FLOATS = 1 << 22


class FaissKMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-means clustering with FAISS, on the GPU when there is one.

    A drop-in for :class:`sklearn.cluster.KMeans` on dense float features:
    the same parameter names where they mean the same thing, the same fitted
    attributes and the same verbs (``fit``, ``predict``, ``fit_predict``,
    ``transform``, ``score``). Each run is FAISS's Lloyd iteration from
    ``n_clusters`` random training points [1]_ [2]_; with ``n_init > 1`` the
    run with the lowest inertia on all of ``X`` is kept.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters; at most the number of samples given to ``fit``.
    spherical : bool, default=False
        Cluster by cosine similarity (spherical k-means [3]_): rows of ``X``
        are L2-normalized, centers are kept at unit norm, and a sample belongs
        to the center with the largest inner product. All-zero rows stay zero.
    n_init : int, default=1
        Number of runs with different seeds; the one with the lowest inertia
        is kept.
    max_iter : int, default=25
        Maximum number of Lloyd iterations of one run (FAISS's ``niter``).
    tol : float in [0, 1], default=0.0
        A run stops once an iteration lowers the FAISS objective by less than
        this fraction of it. Unlike ``KMeans.tol`` (which measures how far
        the centers move) this is a relative change of the objective; 0
        stops only when the objective no longer changes.
    max_points_per_centroid : int or None, default=256
        A run trains on a random subsample of ``n_clusters *
        max_points_per_centroid`` rows when ``X`` has more (FAISS's default);
        ``labels_`` and ``inertia_`` still cover every row. None trains on
        all rows, as ``KMeans`` does.
    random_state : int, RandomState instance or None, default=None
        Seeds the runs' initializations and subsamples. An int gives the same
        clustering on every call (on one device).
    device : str or torch.device, default="auto"
        ``"auto"`` uses the GPU when torch sees CUDA and FAISS was built with
        GPU support, else the CPU; ``"cuda"`` / ``"cuda:N"`` asks for a GPU,
        ``"cpu"`` for the CPU. FAISS has no MPS backend, so ``"mps"`` runs on
        the CPU.
    verbose : int, default=0
        Nonzero prints FAISS's per-iteration objective and each run's inertia.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), dtype float32
        The centers; of unit L2 norm when ``spherical=True``.
    labels_ : ndarray of shape (n_samples,), dtype int64
        Index of the nearest center of each training sample.
    inertia_ : float
        Sum of squared Euclidean distances of the training samples to their
        nearest center, as in ``KMeans``. With ``spherical=True`` the samples
        are L2-normalized first, so each term is ``2 - 2 cos(x, center)`` (1
        for an all-zero row): lower still means tighter clusters.
    n_iter_ : int
        Number of iterations of the kept run.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    sklearn.cluster.KMeans : The same algorithm on the CPU, k-means++ seeding.
    featurekit.evaluate.clustering_scores : NMI and ARI of a clustering
        against known classes.

    Notes
    -----
    Input may be a NumPy array, a torch tensor (any device) or an h5py
    dataset, and is read as float32; float32 C-contiguous input is used as it
    is, without a copy (``spherical=True`` copies it once to normalize).
    Results with one ``random_state`` are identical run to run on one device;
    the GPU sums in a different order, so its centers differ in the last bits.

    References
    ----------
    .. [1] Lloyd, "Least squares quantization in PCM", IEEE Transactions on
       Information Theory 28(2), 1982.
    .. [2] Johnson, Douze and Jégou, "Billion-scale similarity search with
       GPUs", IEEE Transactions on Big Data 7(3), 2021.
    .. [3] Dhillon and Modha, "Concept decompositions for large sparse text
       data using clustering", Machine Learning 42, 2001.

    Examples
    --------
    >>> import numpy as np
    >>> from featurekit.cluster import FaissKMeans
    >>> X = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    >>> km = FaissKMeans(n_clusters=2, random_state=0).fit(X)
    >>> np.sort(km.cluster_centers_[:, 0])
    array([0.1, 5.1], dtype=float32)
    >>> bool(km.predict([[0.1, 0.1]])[0] == km.labels_[0])
    True
    >>> round(km.inertia_, 3)
    0.04
    >>> km.transform(X).shape
    (4, 2)
    >>> km.get_feature_names_out()
    array(['faisskmeans0', 'faisskmeans1'], dtype=object)
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "spherical": ["boolean"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, 1, closed="both")],
        "max_points_per_centroid": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        spherical: bool = False,
        n_init: int = 1,
        max_iter: int = 25,
        tol: float = 0.0,
        max_points_per_centroid: int | None = 256,
        random_state: Any = None,
        device: str | torch.device = "auto",
        verbose: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.spherical = spherical
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.max_points_per_centroid = max_points_per_centroid
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> FaissKMeans:
        """Compute the clustering.

        Parameters
        ----------
        X : array-like, torch.Tensor or h5py.Dataset of shape (n_samples, n_features)
            Training rows; at least ``n_clusters`` of them, all finite.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        x = self._validate_X(X, reset=True)
        n_samples = x.shape[0]
        if n_samples < self.n_clusters:
            raise InputError(
                f"{type(self).__name__} needs at least n_clusters={self.n_clusters} samples "
                f"to fit, got n_samples={n_samples}; pass more samples or set "
                f"n_clusters <= {n_samples}."
            )
        if self.spherical:
            x = _normalized(x)
        gpu = self._gpu_id()
        seeds = check_random_state(self.random_state).randint(
            np.iinfo(np.int32).max, size=self.n_init
        )
        best = None
        for run, seed in enumerate(seeds):
            centers, n_iter = self._run(x, int(seed), gpu)
            labels = _nearest(x, centers, self.spherical, gpu)
            inertia = _inertia(x, centers, labels)
            if self.verbose:
                print(f"{type(self).__name__}: run {run + 1}/{self.n_init}, "
                      f"{n_iter} iterations, inertia {inertia:.6g}")
            if best is None or inertia < best[2]:
                best = (centers, labels, inertia, n_iter)
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = best
        self._n_features_out = self.n_clusters
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest center (largest cosine when spherical) of each row.

        Parameters
        ----------
        X : array-like, torch.Tensor or h5py.Dataset of shape (n_samples, n_features)
            Rows to assign.

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int64
        """
        self._check_fitted()
        x = self._validate_X(X, reset=False)
        # The largest inner product with unit centers is the largest cosine
        # whatever a row's norm, so predict needs no normalized copy of X.
        return _nearest(x, self.cluster_centers_, self.spherical, self._gpu_id())

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance of each row to every center (as ``KMeans.transform``).

        With ``spherical=True`` the rows are L2-normalized first, so the
        distance to a center is ``sqrt(2 - 2 cos)``.

        Parameters
        ----------
        X : array-like, torch.Tensor or h5py.Dataset of shape (n_samples, n_features)
            Rows to measure.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_clusters), dtype float32
        """
        self._check_fitted()
        x = self._validate_X(X, reset=False)
        if self.spherical:
            x = _normalized(x)
        return euclidean_distances(x, self.cluster_centers_).astype(np.float32, copy=False)

    def score(self, X: Any, y: Any = None) -> float:
        """Opposite of the inertia of ``X`` under the fitted centers (higher is better).

        Parameters
        ----------
        X : array-like, torch.Tensor or h5py.Dataset of shape (n_samples, n_features)
            Rows to score.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            Minus the sum of squared distances of the rows to their nearest
            center (of the L2-normalized rows when spherical).
        """
        self._check_fitted()
        x = self._validate_X(X, reset=False)
        if self.spherical:
            x = _normalized(x)
        labels = _nearest(x, self.cluster_centers_, self.spherical, self._gpu_id())
        return -_inertia(x, self.cluster_centers_, labels)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- internals -----------------------------------------------------------
    def _run(self, x: np.ndarray, seed: int, gpu: int | None) -> tuple[np.ndarray, int]:
        """One FAISS k-means run: its centers and number of iterations."""
        n_samples, n_features = x.shape
        params = {
            "niter": self.max_iter,
            "seed": seed,
            "spherical": self.spherical,
            "verbose": bool(self.verbose),
            # FAISS warns below 39 points per centroid; KMeans accepts any n >= k.
            "min_points_per_centroid": 1,
            "max_points_per_centroid": self.max_points_per_centroid or n_samples,
        }
        if hasattr(faiss.ClusteringParameters(), "early_stop_threshold"):
            params["early_stop_threshold"] = float(self.tol)
        elif self.tol > 0:
            raise ParameterError(
                f"tol={self.tol} needs a FAISS with early stopping (ClusteringParameters."
                f"early_stop_threshold); this is faiss {faiss.__version__}. Upgrade faiss "
                "or leave tol=0."
            )
        kmeans = faiss.Kmeans(n_features, self.n_clusters, **params)
        if gpu is not None:
            kmeans.index = _to_gpu(kmeans.index, gpu)
        kmeans.train(x)
        return np.ascontiguousarray(kmeans.centroids, dtype=np.float32), len(kmeans.obj)

    def _gpu_id(self) -> int | None:
        """The GPU FAISS should use, or None for the CPU."""
        device = resolve_device(self.device)
        if device.type != "cuda":
            return None
        if faiss.get_num_gpus() == 0:
            if self.device != "auto":
                warnings.warn(
                    f"device={self.device!r} was asked for, but this faiss has no GPU support "
                    f"(faiss.get_num_gpus() == 0); {type(self).__name__} runs on the CPU. "
                    "Install faiss-gpu to cluster on the GPU.",
                    UserWarning,
                    stacklevel=3,
                )
            return None
        return device.index or 0

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        """X as a finite float32 C-contiguous 2-D array, copied only when it must be."""
        if isinstance(X, torch.Tensor):
            # to() and numpy() return views when X already is float32 on the CPU.
            X = X.detach().to(device="cpu", dtype=torch.float32).numpy()
        elif isinstance(X, h5py.Dataset):
            # HDF5 converts while reading, so a float16 store is never held twice.
            X = X[()] if X.dtype == np.float32 else X.astype(np.float32)[()]
        try:
            # A float64 beyond float32's range becomes inf; _check_finite says so.
            with np.errstate(over="ignore"):
                x = validate_data(self, X, reset=reset, dtype=np.float32, order="C",
                                  ensure_all_finite=False)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        _check_finite(x)
        return x


def _check_finite(x: np.ndarray) -> None:
    # A float64 sum of float32 values cannot overflow, so it is finite exactly
    # when every value is: one cheap pass for the common, clean case.
    if np.isfinite(x.sum(dtype=np.float64)):
        return
    bad = ~np.isfinite(x)
    n_nan = int(np.isnan(x).sum())
    n_inf = int(bad.sum()) - n_nan
    found = " and ".join(
        text for count, text in ((n_nan, f"{n_nan} NaN"), (n_inf, f"{n_inf} infinite"))
        if count
    )
    raise InputError(
        f"X contains {found} value(s) in {int(bad.any(axis=1).sum())} of {len(x)} rows; "
        "k-means needs finite features (values beyond float32's range, about 3.4e38, "
        "become inf). Drop or impute those rows first."
    )


def _normalized(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


def _nearest(x: np.ndarray, centers: np.ndarray, spherical: bool, gpu: int | None) -> np.ndarray:
    """Index of the nearest center of each row (largest inner product if spherical)."""
    index = (faiss.IndexFlatIP if spherical else faiss.IndexFlatL2)(centers.shape[1])
    if gpu is not None:
        index = _to_gpu(index, gpu)
    index.add(centers)
    _, labels = index.search(x, 1)
    return labels.ravel()


def _inertia(x: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of rows to their centers, exact (no |x|^2 - 2xc + |c|^2)."""
    block = max(1, _BLOCK_FLOATS // x.shape[1])
    total = 0.0
    for start in range(0, len(x), block):
        diff = x[start : start + block] - centers[labels[start : start + block]]
        total += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    return total


def _to_gpu(index: Any, device: int) -> Any:
    return faiss.index_cpu_to_gpu(gpu_resources(device), device, index)
