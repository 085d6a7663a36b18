"""scikit-learn's kNN estimators with faiss doing the search.

:class:`FaissKNeighborsClassifier` and :class:`FaissKNeighborsTransformer`
take the place of :class:`sklearn.neighbors.KNeighborsClassifier` and
:class:`sklearn.neighbors.KNeighborsTransformer` (same verbs, same outputs,
same conventions for ``kneighbors(X=None)``) while the neighbours come from a
:class:`featurekit.index.FeatureIndex`: exact by default (``kind="flat"``),
approximate and faster with ``kind="ivf"`` or ``"hnsw"``, on the GPU when
faiss has one.

Distances follow scikit-learn: ``metric="l2"`` (alias ``"euclidean"``) gives
Euclidean distances, ``"cosine"`` gives cosine distances ``1 - similarity``.
``"ip"`` (classifier only) ranks by inner product and reports the negated
inner product, so that smaller still means nearer. Faiss computes in float32,
so distances agree with scikit-learn's float64 ones to about 1e-6 relative,
and the distance of a point to its own duplicate may be ~1e-3 of its norm
rather than exactly 0.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.sparse import csr_matrix
from sklearn.base import (BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin,
                          TransformerMixin)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featurekit.exceptions import InputError, ParameterError
from featurekit.index import FeatureIndex

__all__ = ["FaissKNeighborsClassifier", "FaissKNeighborsTransformer"]

_INDEX_METRIC = {"l2": "l2", "euclidean": "l2", "cosine": "cosine", "ip": "ip"}
_FLOATS = [np.float64, np.float32]


class _FaissNeighbors(BaseEstimator):
    """Fitting the index and ``kneighbors``/``kneighbors_graph``, shared by both estimators."""

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"l2", "euclidean", "cosine", "ip"})],
        "kind": [StrOptions({"flat", "ivf", "hnsw", "ivfpq"})],
        "index_params": [dict, None],
        "device": [str, torch.device],
    }

    def _fit_index(self, X: np.ndarray) -> None:
        params = dict(self.index_params or {})
        clash = sorted({"kind", "metric", "device"} & set(params))
        if clash:
            raise ParameterError(f"index_params must not set {clash}: they are parameters of "
                                 f"{type(self).__name__} itself.")
        self.index_ = FeatureIndex(self.kind, metric=_INDEX_METRIC[self.metric],
                                   device=self.device, **params).fit(X)
        # kneighbors(X=None) queries the training points, as scikit-learn's does.
        self._fit_X = X
        self.n_samples_fit_ = X.shape[0]

    def kneighbors(self, X: ArrayLike | None = None, n_neighbors: int | None = None,
                   return_distance: bool = True) -> Any:
        """Find the nearest fitted points of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            The queries; ``None`` queries every fitted point, each excluded
            from its own neighbours.
        n_neighbors : int, default=None
            Neighbours per query; ``self.n_neighbors`` by default.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors)
            Distances, nearest first (only with ``return_distance=True``).
        neigh_ind : ndarray of int64 of shape (n_queries, n_neighbors)
            Row numbers of the neighbours in the fitted data.
        """
        check_is_fitted(self)
        n_neighbors = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(n_neighbors, Integral) or isinstance(n_neighbors, bool) \
                or n_neighbors < 1:
            raise InputError(f"n_neighbors must be a positive integer; got {n_neighbors!r}.")
        query_is_train = X is None
        if query_is_train:
            X, k = self._fit_X, n_neighbors + 1
        else:
            X, k = validate_data(self, X, reset=False, dtype=_FLOATS), n_neighbors
        if k > self.n_samples_fit_:
            relation = "<" if query_is_train else "<="
            raise InputError(f"Expected n_neighbors {relation} n_samples_fit, but n_neighbors = "
                             f"{n_neighbors}, n_samples_fit = {self.n_samples_fit_}, n_samples = "
                             f"{X.shape[0]}; ask for fewer neighbours.")
        scores, ind = self.index_.search(X, k)
        if (ind < 0).any():
            raise InputError(f"The kind={self.kind!r} index found fewer than {k} neighbours for "
                             "some queries; raise nprobe in index_params, or use kind='flat'.")
        if self.metric == "cosine":
            dist = np.clip(1 - scores, 0, 2)
        else:
            dist = -scores if self.metric == "ip" else scores
        if query_is_train:
            dist, ind = _drop_self(dist, ind)
        dist = dist.astype(X.dtype, copy=False)
        return (dist, ind) if return_distance else ind

    def kneighbors_graph(self, X: ArrayLike | None = None, n_neighbors: int | None = None,
                         mode: str = "connectivity") -> csr_matrix:
        """The k-neighbours graph of the queries as a CSR matrix.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            As in :meth:`kneighbors`.
        n_neighbors : int, default=None
            Neighbours per query; ``self.n_neighbors`` by default.
        mode : {"connectivity", "distance"}, default="connectivity"
            Ones, or the distances.

        Returns
        -------
        A : sparse matrix of shape (n_queries, n_samples_fit)
            ``A[i, j]`` is the weight of the edge from query i to fitted point j.
        """
        if mode not in ("connectivity", "distance"):
            raise ValueError('Unsupported mode, must be one of "connectivity", or "distance" '
                             f"but got {mode!r} instead")
        dist, ind = self.kneighbors(X, n_neighbors, return_distance=True)
        data = np.ones_like(dist) if mode == "connectivity" else dist
        n_queries, k = ind.shape
        return csr_matrix((data.ravel(), ind.ravel(), np.arange(0, n_queries * k + 1, k)),
                          shape=(n_queries, self.n_samples_fit_))


class FaissKNeighborsClassifier(ClassifierMixin, _FaissNeighbors):
    """k-nearest-neighbours vote, like scikit-learn's ``KNeighborsClassifier``.

    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours that vote.
    weights : {"uniform", "distance"}, default="uniform"
        Equal votes, or votes weighted by inverse distance (a query at
        distance 0 from some points takes only their votes).
    metric : {"l2", "euclidean", "cosine", "ip"}, default="l2"
        See the module docstring; ``"ip"`` needs ``weights="uniform"``.
    kind : {"flat", "ivf", "hnsw", "ivfpq"}, default="flat"
        The :class:`~featurekit.index.FeatureIndex` kind; only ``"flat"`` is
        exact.
    index_params : dict, default=None
        More :class:`~featurekit.index.FeatureIndex` parameters
        (``nprobe``, ``ef_search``, ``random_state``...).
    device : str or torch.device, default="auto"
        Where faiss searches (see :class:`~featurekit.index.FeatureIndex`).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    index_ : FeatureIndex
        The fitted index.
    n_features_in_ : int
        Number of features seen in ``fit``.
    n_samples_fit_ : int
        Number of fitted points.

    See Also
    --------
    sklearn.neighbors.KNeighborsClassifier : The scikit-learn original.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = FaissKNeighborsClassifier(n_neighbors=3).fit(X[:1500], y[:1500])
    >>> round(clf.score(X[1500:], y[1500:]), 3)
    0.96
    """

    _parameter_constraints: dict = {
        **_FaissNeighbors._parameter_constraints,
        "weights": [StrOptions({"uniform", "distance"})],
    }

    def __init__(self, n_neighbors: int = 5, *, weights: str = "uniform", metric: str = "l2",
                 kind: str = "flat", index_params: dict | None = None,
                 device: str | torch.device = "auto") -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.metric = metric
        self.kind = kind
        self.index_params = index_params
        self.device = device

    def fit(self, X: ArrayLike, y: ArrayLike) -> FaissKNeighborsClassifier:
        """Index the training points and remember their labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,)
            Their class labels.

        Returns
        -------
        self : FaissKNeighborsClassifier
        """
        self._validate_params()
        if self.metric == "ip" and self.weights == "distance":
            raise ParameterError("weights='distance' needs a distance; metric='ip' ranks by "
                                 "inner product. Use metric='cosine' or weights='uniform'.")
        X, y = validate_data(self, X, y, dtype=_FLOATS)
        check_classification_targets(y)
        self.classes_, self._y = np.unique(y, return_inverse=True)
        self._fit_index(X)
        return self

    def predict_proba(self, X: ArrayLike | None) -> np.ndarray:
        """Share of (weighted) neighbour votes per class.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None
            The queries; ``None`` classifies every fitted point by its
            neighbours other than itself.

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes)
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        dist, ind = self.kneighbors(X)
        if self.weights == "uniform":
            weight = np.ones(ind.shape)
        else:
            with np.errstate(divide="ignore"):
                weight = 1.0 / dist.astype(np.float64)
            exact = np.isinf(weight)
            hit = exact.any(axis=1)
            weight[hit] = exact[hit]  # an exact match outvotes everything, as in sklearn
        proba = np.zeros((len(ind), len(self.classes_)))
        np.add.at(proba, (np.arange(len(ind))[:, None], self._y[ind]), weight)
        total = proba.sum(axis=1, keepdims=True)
        total[total == 0] = 1.0
        return proba / total

    def predict(self, X: ArrayLike | None) -> np.ndarray:
        """The class with the most (weighted) votes; ties go to the first in ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None
            As in :meth:`predict_proba`.

        Returns
        -------
        y : ndarray of shape (n_queries,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class FaissKNeighborsTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                                 _FaissNeighbors):
    """Sparse k-neighbours graph, like scikit-learn's ``KNeighborsTransformer``.

    Put it before an estimator that takes ``metric="precomputed"`` (Isomap,
    TSNE, DBSCAN, SpectralClustering...) to have faiss do the search.

    Parameters
    ----------
    mode : {"distance", "connectivity"}, default="distance"
        Distances or ones. In ``"distance"`` mode each sample of ``X`` gets
        ``n_neighbors + 1`` neighbours, since in ``fit_transform`` the first
        is the point itself (as scikit-learn does).
    n_neighbors : int, default=5
        Neighbours per sample.
    metric : {"l2", "euclidean", "cosine"}, default="l2"
        A graph of precomputed distances needs a true distance, so no ``"ip"``.
    kind : {"flat", "ivf", "hnsw", "ivfpq"}, default="flat"
        The :class:`~featurekit.index.FeatureIndex` kind.
    index_params : dict, default=None
        More :class:`~featurekit.index.FeatureIndex` parameters.
    device : str or torch.device, default="auto"
        Where faiss searches (see :class:`~featurekit.index.FeatureIndex`).

    Attributes
    ----------
    index_ : FeatureIndex
        The fitted index.
    n_features_in_ : int
        Number of features seen in ``fit``.
    n_samples_fit_ : int
        Number of fitted points (the graph's columns).

    See Also
    --------
    sklearn.neighbors.KNeighborsTransformer : The scikit-learn original.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.manifold import Isomap
    >>> from sklearn.pipeline import make_pipeline
    >>> X, _ = load_digits(return_X_y=True)
    >>> graph = FaissKNeighborsTransformer(n_neighbors=10).fit_transform(X[:200])
    >>> graph.shape, graph.nnz
    ((200, 200), 2200)
    >>> make_pipeline(FaissKNeighborsTransformer(n_neighbors=10),
    ...               Isomap(n_neighbors=10, metric="precomputed")).fit_transform(X[:200]).shape
    (200, 2)
    """

    _parameter_constraints: dict = {
        **_FaissNeighbors._parameter_constraints,
        "mode": [StrOptions({"distance", "connectivity"})],
        "metric": [StrOptions({"l2", "euclidean", "cosine"})],
    }

    def __init__(self, *, mode: str = "distance", n_neighbors: int = 5, metric: str = "l2",
                 kind: str = "flat", index_params: dict | None = None,
                 device: str | torch.device = "auto") -> None:
        self.mode = mode
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.kind = kind
        self.index_params = index_params
        self.device = device

    def fit(self, X: ArrayLike, y: Any = None) -> FaissKNeighborsTransformer:
        """Index the points.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points.
        y : None
            Ignored.

        Returns
        -------
        self : FaissKNeighborsTransformer
        """
        self._validate_params()
        X = validate_data(self, X, dtype=_FLOATS)
        self._fit_index(X)
        self._n_features_out = self.n_samples_fit_
        return self

    def transform(self, X: ArrayLike) -> csr_matrix:
        """The k-neighbours graph of ``X`` against the fitted points.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            The queries.

        Returns
        -------
        Xt : sparse matrix of shape (n_queries, n_samples_fit)
            CSR; only the neighbours have explicit values.
        """
        check_is_fitted(self)
        add_one = self.mode == "distance"
        return self.kneighbors_graph(X, mode=self.mode, n_neighbors=self.n_neighbors + add_one)

    def fit_transform(self, X: ArrayLike, y: Any = None) -> csr_matrix:
        """``fit(X).transform(X)``: every point's graph row, itself included."""
        return self.fit(X).transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _drop_self(dist: np.ndarray, ind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each fitted point from its own k+1 neighbours (scikit-learn's rule).

    A point with more exact duplicates than k may not find itself; then its
    first neighbour, a duplicate, goes instead.
    """
    n, k = ind.shape
    keep = ind != np.arange(n)[:, None]
    keep[keep.all(axis=1), 0] = False
    return dist[keep].reshape(n, k - 1), ind[keep].reshape(n, k - 1)
