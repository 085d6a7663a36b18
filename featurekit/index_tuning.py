"""Choosing an approximate index's search effort from the data: recall calibration.

How many inverted lists (``nprobe``) or graph candidates (``efSearch``) a
query needs for a given recall depends on how the vectors cluster, not only
on their number: on 100k CIFAR-10 features, ``nprobe=12`` of 1,265 lists gives
recall@10 0.96 for a trained SimCLR model's features and 0.92 for an
untrained network's. So instead of a fixed rule, :func:`calibrate` measures.
It takes a sample of the indexed vectors as queries, finds their exact
neighbours (leaving each query itself out), and returns the smallest setting
of a grid whose recall reaches the target.

The estimate is from vectors that are in the index. Queries from elsewhere
can score lower when the collection holds near-copies of its own items (such
as augmented views) that outside queries lack; ``benchmarks/bench_index.py``
prints the estimate beside the recall of held-out queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import faiss
import numpy as np

#: Neighbours per query the calibration measures recall at.
CALIBRATION_K = 10
#: Queries sampled from the indexed vectors.
CALIBRATION_QUERIES = 256

#: Recall gains below this count as none (a plateau).
PLATEAU = 0.005

#: Candidate ``nprobe`` values, tried in order (the index's ``nlist`` is always last).
NPROBE_GRID = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80,
               96, 128, 160, 192, 256, 384, 512, 768, 1024, 1536, 2048)
#: Candidate ``efSearch`` values, tried in order.
EF_SEARCH_GRID = (10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 80, 96, 128, 192, 256, 384, 512,
                  768, 1024, 2048)


def exact_neighbours(blocks: Iterable[np.ndarray], queries: np.ndarray, k: int,
                     largest: bool) -> np.ndarray:
    """Row positions of the ``k`` nearest rows to each query, by brute force.

    Parameters
    ----------
    blocks : iterable of float32 arrays
        The indexed rows in order, block by block (prepared as the index
        stores them: normalized for cosine), so a lazy input stays lazy.
    queries : ndarray of shape (n_queries, n_features)
    k : int
    largest : bool
        True for inner-product scores (best is largest), False for L2.

    Returns
    -------
    ndarray of int64 of shape (n_queries, k)
    """
    heap = faiss.ResultHeap(len(queries), k, keep_max=largest)
    metric = faiss.METRIC_INNER_PRODUCT if largest else faiss.METRIC_L2
    start = 0
    for block in blocks:
        scores, found = faiss.knn(queries, block, min(k, len(block)), metric=metric)
        if found.shape[1] < k:  # a block smaller than k: pad with "no result"
            pad = ((0, 0), (0, k - found.shape[1]))
            found = np.pad(found, pad, constant_values=-1)
            scores = np.pad(scores, pad, constant_values=-np.inf if largest else np.inf)
        heap.add_result(scores, np.where(found >= 0, found + start, -1))
        start += len(block)
    heap.finalize()
    return heap.I


def recall_without_self(found: np.ndarray, truth: np.ndarray, query_ids: np.ndarray,
                        k: int) -> float:
    """Mean share of each query's true ``k`` neighbours found, the query itself left out.

    ``found`` and ``truth`` hold ``k + 1`` ids per row (room for the query's
    own id, which is dropped from both).
    """
    hits = 0
    for row, true_row, own in zip(found, truth, query_ids):
        true_set = set(true_row[true_row != own][:k].tolist())
        hits += len(true_set.intersection(row[row != own][:k].tolist()))
    return hits / (k * len(query_ids))


def calibrate(search: Callable[[np.ndarray, int, int], np.ndarray], grid: Iterable[int],
              queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray, k: int,
              target: float) -> tuple[int, float, list[tuple[int, float]]]:
    """The first ``grid`` value whose recall reaches ``target``.

    Parameters
    ----------
    search : callable
        ``search(queries, k, value)`` returns the ids found with the setting
        ``value``.
    grid : iterable of int
        Candidate settings, cheapest first; recall is assumed to grow along it.
    queries, query_ids : ndarrays
        The calibration queries (indexed rows) and their ids.
    truth : ndarray of shape (n_queries, k + 1)
        Their exact neighbours' ids, themselves included.
    k : int
        Recall is measured at ``k``.
    target : float
        The recall to reach.

    Returns
    -------
    value : int
        The chosen setting: the first reaching ``target``; else, once recall
        stops growing (less than :data:`PLATEAU` over three steps, as with
        lossy codes) or the grid ends, the cheapest within :data:`PLATEAU`
        of the best recall seen.
    recall : float
        Its measured recall.
    curve : list of (value, recall)
        Every setting tried.
    """
    curve: list[tuple[int, float]] = []
    for value in grid:
        curve.append((value, recall_without_self(search(queries, k + 1, value), truth,
                                                 query_ids, k)))
        if curve[-1][1] >= target:
            return value, curve[-1][1], curve
        if len(curve) > 3 and curve[-1][1] < curve[-4][1] + PLATEAU:
            break
    best = max(r for _, r in curve)
    value, recall = next((v, r) for v, r in curve if r >= best - PLATEAU)
    return value, recall, curve


def nprobe_grid(nlist: int) -> Iterator[int]:
    """:data:`NPROBE_GRID` below ``nlist``, then ``nlist`` (an exhaustive scan)."""
    yield from (p for p in NPROBE_GRID if p < nlist)
    yield nlist


def ef_search_grid(k: int) -> Iterator[int]:
    """:data:`EF_SEARCH_GRID` from ``k`` up (faiss never uses fewer than ``k`` candidates)."""
    yield from (ef for ef in EF_SEARCH_GRID if ef >= k)
