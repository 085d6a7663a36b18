"""Speed and recall of ``featurekit.index.FeatureIndex`` on real image features.

Base set (``--n`` vectors, default 100,000): CIFAR-10 images and augmented
views of them (random resized crop at scale 0.25-1, flip, colour jitter and
grayscale from ``featurekit.data.augment``), embedded by a ``small_cnn``
SimCLR model trained for ``--epochs`` (default 5) on the base images (the
features users index; ``--model untrained`` uses a frozen, randomly
initialized CNN instead, whose features cluster less and need more search
effort) and reduced to ``--dim`` dimensions (default 128) with PCA. Queries
(``--queries``, default 1,000) are held-out images: neither they nor their
views are in the base set. The features are cached under ``--cache-dir``
(default ``/tmp/featurekit-bench-index``), so reruns skip the ~4 minutes of
training and extraction.

Printed, all with ``metric="cosine"`` and k=10 (``--k``):

1. exact search: ``FeatureIndex(kind="flat")`` against scikit-learn's
   ``NearestNeighbors(algorithm="brute")`` in the same run, both given
   ``--threads`` threads, and how often their neighbour sets agree;
2. for ``ivf`` and ``hnsw`` (and a few rows of ``ivfpq``): recall@10 against
   exact search and speed over ``nprobe`` / ``efSearch``, the default (the
   effort ``fit`` calibrated for ``target_recall=0.95``) marked, with the
   speed-up over exact faiss search, and the calibration's own estimate;
3. build time (training included) and index memory (faiss's serialized size).

Speed is measured two ways, as the two uses differ: all queries in one batch
(where exact search runs as one BLAS matrix product, its best case) and one
query at a time (``--latency-queries`` of them; searching with an image).
Times are the best of ``--repeats`` runs.
Defaults take about 2.5 minutes on a busy 2-core box once the features are
cached::

    python benchmarks/bench_index.py [--n 100000] [--dim 128] [--queries 1000]
        [--threads 1] [--k 10] [--data cifar10] [--model simclr] [--epochs 5]
        [--data-dir DIR] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

import featurekit
from featurekit.data.augment import ColorJitter, Compose, RandomGrayscale
from featurekit.data.augment import RandomHorizontalFlip, RandomResizedCrop
from featurekit.index import FeatureIndex

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
CACHE_VERSION = 2


def load_images(data_dir: Path, data: str) -> np.ndarray:
    with np.load(data_dir / f"{data}_test.npz", allow_pickle=False) as d:
        return d["x"]


def augmented_views(images: np.ndarray, n_views: int, seed: int) -> np.ndarray:
    """``n_views`` uint8 views, cycling over ``images``, made by batched featurekit ops."""
    size = images.shape[1]
    recipe = Compose([RandomResizedCrop(size, scale=(0.25, 1.0)), RandomHorizontalFlip(0.5),
                      ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), RandomGrayscale(0.2)])
    generator = torch.Generator().manual_seed(seed)
    chunks, made = [], 0
    while made < n_views:
        batch = images[np.arange(made, min(made + 2048, n_views)) % len(images)]
        x = torch.from_numpy(batch).float().div(255)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        view = recipe(x, generator).mul(255).round().to(torch.uint8)
        view = view[:, 0] if images.ndim == 3 else view.permute(0, 2, 3, 1)
        chunks.append(view.numpy())
        made += len(batch)
    return np.concatenate(chunks)


def make_features(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(base, queries) float32 features, from the cache when present."""
    model = f"simclr{args.epochs}" if args.model == "simclr" else args.model
    cache = args.cache_dir / (f"{args.data}_{model}_n{args.n}_d{args.dim}"
                              f"_q{args.queries}_v{CACHE_VERSION}.npz")
    if cache.exists():
        with np.load(cache) as f:
            return f["base"], f["queries"]
    started = time.perf_counter()
    images = load_images(args.data_dir, args.data)
    order = np.random.default_rng(0).permutation(len(images))
    queries, originals = images[order[:args.queries]], images[order[args.queries:]]
    if args.n < len(originals):
        originals = originals[:args.n]
    views = augmented_views(originals, args.n - len(originals), seed=0)
    width = {"width": max(32, math.ceil(args.dim / 8))}
    if args.model == "simclr":  # learned features, as users index them
        est = featurekit.create("simclr", backbone="small_cnn", backbone_kwargs=width,
                                max_epochs=args.epochs, batch_size=256, random_state=0,
                                verbose=0)
    else:  # a frozen, randomly initialized CNN
        est = featurekit.create("pretrained", backbone="small_cnn", backbone_kwargs=width,
                                random_state=0, verbose=0)
    est.fit(originals)
    base = np.concatenate([est.transform(originals), est.transform(views)])
    query_features = est.transform(queries)
    pca = PCA(args.dim, random_state=0).fit(base)
    base = pca.transform(base).astype(np.float32)
    query_features = pca.transform(query_features).astype(np.float32)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez(tmp, base=base, queries=query_features)
    tmp.replace(cache)
    print(f"features: {len(base)} + {len(query_features)} in "
          f"{time.perf_counter() - started:.0f} s, cached in {cache}")
    return base, query_features


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


def build(index: FeatureIndex, base: np.ndarray) -> tuple[FeatureIndex, float, int]:
    started = time.perf_counter()
    index.fit(base)
    seconds = time.perf_counter() - started
    return index, seconds, len(faiss.serialize_index(index.index_))


def single_query_time(search, queries: np.ndarray, repeats: int) -> float:
    """Seconds per query when queries come one at a time (the image-search case)."""
    seconds, _ = best_time(lambda: [search(queries[i:i + 1]) for i in range(len(queries))],
                           repeats)
    return seconds / len(queries)


def default_effort(index: FeatureIndex, k: int) -> int:
    """The nprobe or efSearch the index searches with by default at ``k``."""
    params = index._search_parameters(k)
    return params.efSearch if index.kind == "hnsw" else params.nprobe


def curve(index: FeatureIndex, param: str, values: list[int], default: int,
          queries: np.ndarray, truth: np.ndarray, exact: tuple[float, float], args) -> dict:
    """Print recall and speed over ``values`` of ``param``; return the default's row."""
    print(f"  {param:>9} {'recall@' + str(args.k):>10} {'batch q/s':>10} {'vs exact':>9} "
          f"{'1-query ms':>11} {'vs exact':>9}")
    rows = {}
    for value in sorted(set(values) | {default}):
        index.set_params(**{param: value})
        batch_s, (_, found) = best_time(lambda: index.search(queries, args.k), args.repeats)
        single_s = single_query_time(lambda q: index.search(q, args.k),
                                     queries[:args.latency_queries], args.repeats)
        rows[value] = row = {"recall": recall(found, truth), "batch": exact[0] / batch_s,
                             "single": exact[1] / single_s}
        mark = "  * default" if value == default else ""
        print(f"  {value:>9} {row['recall']:>10.4f} {len(queries) / batch_s:>10.0f} "
              f"{row['batch']:>8.1f}x {single_s * 1e3:>11.3f} {row['single']:>8.1f}x{mark}")
    index.set_params(**{param: "auto"})
    return rows[default]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="base vectors")
    parser.add_argument("--dim", type=int, default=128, help="feature dimension (PCA)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out query images")
    parser.add_argument("--threads", type=int, default=1, help="threads for faiss and BLAS")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (best is kept)")
    parser.add_argument("--latency-queries", type=int, default=200,
                        help="queries timed one at a time")
    parser.add_argument("--data", choices=("cifar10", "mnist"), default="cifar10")
    parser.add_argument("--model", choices=("simclr", "untrained"), default="simclr",
                        help="features: SimCLR trained on the base images, or an untrained CNN")
    parser.add_argument("--epochs", type=int, default=5, help="SimCLR training epochs")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/featurekit-bench-index"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    base, queries = make_features(args)
    print(f"base {base.shape}, queries {queries.shape}, metric cosine, k={args.k}, "
          f"{args.threads} thread(s); single-query times over the first "
          f"{args.latency_queries} queries\n")

    flat, flat_build, flat_bytes = build(FeatureIndex("flat"), base)
    exact_s, (_, truth) = best_time(lambda: flat.search(queries, args.k), args.repeats)
    exact_single = single_query_time(lambda q: flat.search(q, args.k),
                                     queries[:args.latency_queries], args.repeats)
    sk = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric="cosine").fit(base)
    sk_s, sk_found = best_time(lambda: sk.kneighbors(queries, return_distance=False),
                               max(1, args.repeats - 1))
    sk_single = single_query_time(lambda q: sk.kneighbors(q, return_distance=False),
                                  queries[:args.latency_queries], 1)
    print("exact search        batch        1-query")
    print(f"  faiss flat     {exact_s * 1e3:8.1f} ms  {exact_single * 1e3:8.3f} ms   "
          f"build {flat_build:.1f} s, memory {flat_bytes / 2**20:.1f} MiB")
    print(f"  sklearn brute  {sk_s * 1e3:8.1f} ms  {sk_single * 1e3:8.3f} ms")
    print(f"  faiss speed-up over sklearn: batch {sk_s / exact_s:.1f}x, 1-query "
          f"{sk_single / exact_single:.1f}x; neighbour sets agree {recall(truth, sk_found):.4f}\n")
    exact = (exact_s, exact_single)

    ivf, ivf_build, ivf_bytes = build(FeatureIndex("ivf", random_state=0), base)
    print(f"ivf: nlist {ivf.nlist_}, build {ivf_build:.1f} s (calibration included), memory "
          f"{ivf_bytes / 2**20:.1f} MiB; calibrated nprobe {ivf.nprobe_}, estimated recall "
          f"{ivf.calibrated_recall_:.4f}")
    ivf_default = curve(ivf, "nprobe", [1, 2, 4, 8, 12, 16, 24, 32, 64, 128],
                        default_effort(ivf, args.k), queries, truth, exact, args)

    hnsw, hnsw_build, hnsw_bytes = build(FeatureIndex("hnsw", random_state=0), base)
    print(f"\nhnsw: M {hnsw.hnsw_m}, efConstruction {hnsw.ef_construction}, "
          f"build {hnsw_build:.1f} s, memory {hnsw_bytes / 2**20:.1f} MiB; calibrated "
          f"efSearch {hnsw.ef_search_}, estimated recall {hnsw.calibrated_recall_:.4f}")
    hnsw_default = curve(hnsw, "ef_search", [10, 16, 24, 32, 48, 64, 96, 128, 256],
                         default_effort(hnsw, args.k), queries, truth, exact, args)

    pq, pq_build, pq_bytes = build(FeatureIndex("ivfpq", random_state=0), base)
    print(f"\nivfpq: nlist {pq.nlist_}, pq_m {pq.pq_m_} x 8 bits, build {pq_build:.1f} s, "
          f"memory {pq_bytes / 2**20:.1f} MiB; calibrated nprobe {pq.nprobe_}, estimated "
          f"recall {pq.calibrated_recall_:.4f}")
    curve(pq, "nprobe", [8, 64], default_effort(pq, args.k), queries, truth, exact, args)

    print("\ndefaults vs exact faiss search (recall@{k}; speed-up batch / 1-query):".format(
        k=args.k))
    for name, row in (("ivf", ivf_default), ("hnsw", hnsw_default)):
        print(f"  {name:5} recall {row['recall']:.4f}; {row['batch']:.1f}x / {row['single']:.1f}x")


if __name__ == "__main__":
    main()
