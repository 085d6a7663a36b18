"""Search at scale: ``FeatureIndex`` over one million real-image feature vectors.

The base set is ``--n`` vectors (default 1,000,000): the 9,000 CIFAR-10 test
images that are not queries and augmented views of them (about 110 per image:
random resized crop at scale 0.25-1, flip, colour jitter, grayscale, from
``featurekit.data.augment``, the recipe of ``bench_index.py``), embedded by a
``small_cnn`` (width 16, 128-d output) trained for ``--epochs`` SimCLR epochs
on the 9,000 images (``--model untrained``: a frozen, randomly initialized
one) and reduced to ``--dim`` dimensions (default 64) by a PCA fitted on every
tenth row. Queries are the 1,000 held-out images (``--queries``): neither they
nor their views are indexed.

Memory stays bounded while the features are made: views are generated
``--chunk`` rows at a time, embedded and appended to a feature store
(``raw.h5``); the PCA is fitted on a subsample read block by block and written
block by block to a second store (``base_d64.h5``), and every index is built
from that store read lazily (``FeatureIndex.fit`` takes a ``FeatureStore``
and reads it in blocks). Stores and model are cached in ``--cache-dir``
(default ``benchmarks/out/scale_index/``, ignored by git, about 0.8 GB at the
defaults); an interrupted feature stage resumes at the last stored chunk.

Per index configuration (all ``metric="cosine"``, k=10):

- ``flat``: exact search, the baseline and the ground truth;
- ``ivf``: IVF-Flat, ``nlist="auto"`` (4 * sqrt(N));
- ``hnsw``: M=32, efConstruction=40;
- ``ivfpq``: IVF-PQ with ``--pq-m`` code sizes (bytes per vector at 8 bits),
  with featurekit's default random rotation, and ``--opq-m`` of them also with
  an OPQ rotation (``pq_rotation="opq"``).

it reports the build time (training, adding and ``fit``'s recall
calibration, whose share is given), the index size (faiss's serialized
bytes), the process's resident-memory growth while building and its peak
(``VmHWM`` of ``/proc/self/status``, reset before each build), and recall@10
against exact search with queries per second (the 1,000 queries as one batch,
best of ``--repeats``) and the speed-up over exact search, over a range of
``nprobe`` / ``efSearch``. It prints a table and writes
``<out>/scale_index.json`` and ``<out>/scale_index.png`` (recall vs QPS).

Threads: ``--threads`` (default 1) for torch and BLAS during extraction and
``--faiss-threads`` (default 1) for faiss's builds and searches. The defaults
took 86 minutes on a 2-core machine shared with other jobs: 39 making the
features (later runs reuse them) and 47 building and searching the eight
indexes (IVF k-means and HNSW dominate; ``--faiss-threads 2`` or fewer
``--pq-m`` shorten it)::

    OMP_NUM_THREADS=1 python benchmarks/bench_scale_index.py [--n 1000000]
        [--dim 64] [--model simclr|untrained] [--epochs 5] [--pq-m 8 16 32]
        [--opq-m 8 16] [--faiss-threads 1] [--stage all|features|indexes]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import augmented_views, best_time, load_images, recall  # noqa: E402

import featurekit  # noqa: E402
from featurekit.index import FeatureIndex  # noqa: E402
from featurekit.store import FeatureStore  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = HERE.parents[1] / "shared" / "data"
CACHE_VERSION = 1
WIDTH = 16  # small_cnn width: 8 * 16 = 128-d features, ~2.7k images/s on one core


# -- memory ------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Reset the kernel's resident-memory high-water mark (``VmHWM``), Linux >= 4.0."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss_mib() -> float:
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    return _status_kib("VmHWM") / 1024


# -- features ----------------------------------------------------------------
def make_features(args: argparse.Namespace) -> tuple[Path, np.ndarray]:
    """The base store (``--dim`` features) and the query features, made once."""
    tag = f"{args.model}{args.epochs if args.model == 'simclr' else ''}_n{args.n}"
    folder = args.cache_dir / f"{tag}_v{CACHE_VERSION}"
    base_path, query_path = folder / f"base_d{args.dim}.h5", folder / f"queries_d{args.dim}.npz"
    if base_path.exists() and query_path.exists():
        with np.load(query_path) as f:
            return base_path, f["queries"]
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with np.load(args.data_dir / f"{args.data}_test.npz", allow_pickle=False) as d:
        labels_all = d["y"]
    images = load_images(args.data_dir, args.data)
    order = np.random.default_rng(0).permutation(len(images))
    queries, originals = images[order[:args.queries]], images[order[args.queries:]]
    labels = labels_all[order[args.queries:]]
    est = _model(args, originals, folder)
    print(f"model ready in {time.perf_counter() - started:.0f} s", flush=True)

    raw_path = folder / "raw.h5"
    with FeatureStore(raw_path, "a") as raw:
        done = len(raw)
        for start in range(done, args.n, args.chunk):
            stop = min(start + args.chunk, args.n)
            rows = np.arange(start, stop)
            source = rows % len(originals)
            # Rows below len(originals) are the images themselves, the rest views.
            batch = originals[source].copy()
            viewed = rows >= len(originals)
            if viewed.any():
                batch[viewed] = augmented_views(batch[viewed], int(viewed.sum()),
                                                seed=start // args.chunk)
            raw.append(est.transform(batch), rows, labels=labels[source])
            print(f"  embedded {stop:>9,} rows, {time.perf_counter() - started:6.0f} s",
                  flush=True)
        # PCA on every tenth row, read block by block: the whole set never sits in memory.
        sample = np.concatenate([b[::10] for b, _ in raw.iter_batches(args.chunk)])
        pca = PCA(args.dim, random_state=0).fit(sample)
        del sample
        tmp = base_path.with_name(base_path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with FeatureStore(tmp, "w") as base:
            for block, ids in raw.iter_batches(args.chunk):
                base.append(pca.transform(block).astype(np.float32), ids)
    tmp.replace(base_path)
    query_features = pca.transform(est.transform(queries)).astype(np.float32)
    np.savez(query_path, queries=query_features)
    print(f"features: {args.n:,} + {len(query_features):,} in "
          f"{time.perf_counter() - started:.0f} s, cached in {folder}", flush=True)
    return base_path, query_features


def _model(args: argparse.Namespace, originals: np.ndarray, folder: Path):
    path = folder / "model.pt"
    if path.exists():  # a resumed run must embed with the same weights
        return featurekit.load(path)
    width = {"width": WIDTH}
    if args.model == "simclr":
        est = featurekit.create("simclr", backbone="small_cnn", backbone_kwargs=width,
                                max_epochs=args.epochs, batch_size=256, random_state=0,
                                verbose=0)
    else:
        est = featurekit.create("pretrained", backbone="small_cnn", backbone_kwargs=width,
                                random_state=0, verbose=0)
    est.fit(originals)
    est.save(path)
    return est


# -- indexes -----------------------------------------------------------------
def build(index: FeatureIndex, store: FeatureStore) -> dict:
    """Fit ``index`` on the store (read lazily); time and memory of the build."""
    calibration = {}
    fit_calibrate = index._calibrate

    def timed_calibrate(*a):
        t = time.perf_counter()
        fit_calibrate(*a)
        calibration["s"] = time.perf_counter() - t

    index._calibrate = timed_calibrate  # benchmark-only: the calibration's share of fit
    before = rss_mib()
    reset_peak_rss()
    started = time.perf_counter()
    index.fit(store, ids=store.ids[:])
    seconds = time.perf_counter() - started
    held, peak = rss_mib() - before, peak_rss_mib() - before
    del index._calibrate
    return {"build_s": seconds, "calibration_s": calibration.get("s", 0.0),
            "index_bytes": len(faiss.serialize_index(index.index_)),
            "rss_growth_mib": held, "peak_rss_growth_mib": peak,
            "nlist": index.nlist_, "pq_m": index.pq_m_,
            "calibrated": index.nprobe_ or index.ef_search_,
            "calibrated_recall": index.calibrated_recall_}


def sweep(index: FeatureIndex, param: str | None, values: list, queries: np.ndarray,
          truth: np.ndarray | None, exact_s: float | None, args) -> list[dict]:
    points = []
    for value in values:
        if param is not None:
            index.set_params(**{param: value})
        seconds, (_, found) = best_time(lambda: index.search(queries, args.k), args.repeats)
        points.append({"effort": value, "recall": 1.0 if truth is None else recall(found, truth),
                       "qps": len(queries) / seconds,
                       "speedup": 1.0 if exact_s is None else exact_s / seconds})
        if truth is None:
            points[-1]["found"] = found
    if param is not None:
        index.set_params(**{param: "auto"})
    return points


def configs(args: argparse.Namespace) -> list[tuple[str, dict, str | None, list]]:
    nprobes = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    rows = [("ivf", {"kind": "ivf"}, "nprobe", nprobes),
            ("hnsw", {"kind": "hnsw"}, "ef_search", [16, 32, 64, 128, 256, 512])]
    for m in args.pq_m:
        rows.append((f"ivfpq m{m}", {"kind": "ivfpq", "pq_m": m}, "nprobe", nprobes))
        if m in args.opq_m:
            rows.append((f"ivfpq m{m} opq", {"kind": "ivfpq", "pq_m": m, "pq_rotation": "opq"},
                         "nprobe", nprobes))
    return rows


def run_indexes(args: argparse.Namespace, base_path: Path, queries: np.ndarray) -> dict:
    results = {"n": args.n, "dim": args.dim, "queries": len(queries), "k": args.k,
               "metric": "cosine", "model": args.model, "epochs": args.epochs,
               "faiss_threads": args.faiss_threads, "configs": {}}
    with FeatureStore(base_path) as store:
        print(f"base {store.shape} from {base_path}, queries {queries.shape}, cosine, "
              f"k={args.k}, faiss {args.faiss_threads} thread(s)\n", flush=True)
        flat = FeatureIndex("flat")
        info = build(flat, store)
        exact = sweep(flat, None, [None], queries, None, None, args)[0]
        truth, exact_s = exact.pop("found"), len(queries) / exact["qps"]
        results["configs"]["flat"] = {**info, "points": [exact]}
        report("flat", info, [exact], None)
        del flat
        for name, params, param, values in configs(args):
            index = FeatureIndex(random_state=0, **params)
            info = build(index, store)
            values = [v for v in values if info["nlist"] is None or v <= info["nlist"]]
            points = sweep(index, param, values, queries, truth, exact_s, args)
            results["configs"][name] = {**info, "params": params, "effort_name": param,
                                        "points": points}
            report(name, info, points, param)
            del index
    return results


def report(name: str, info: dict, points: list[dict], param: str | None) -> None:
    extra = "".join(f", {k} {info[k]}" for k in ("nlist", "pq_m") if info[k] is not None)
    calibrated = ("" if info["calibrated"] is None else
                  f"; fit chose {param} {info['calibrated']} (estimated recall "
                  f"{info['calibrated_recall']:.3f})")
    print(f"{name}{extra}: build {info['build_s']:.1f} s (calibration "
          f"{info['calibration_s']:.1f} s), index {info['index_bytes'] / 2**20:.1f} MiB, "
          f"RSS +{info['rss_growth_mib']:.0f} MiB (peak +{info['peak_rss_growth_mib']:.0f} "
          f"MiB){calibrated}", flush=True)
    print(f"  {param or 'exact':>9} {'recall@10':>10} {'QPS':>9} {'vs exact':>9}")
    for p in points:
        print(f"  {str(p['effort'] if param else '-'):>9} {p['recall']:>10.4f} "
              f"{p['qps']:>9.0f} {p['speedup']:>8.1f}x")
    print(flush=True)


def summary(results: dict) -> None:
    """One line per config: build, memory, and the fastest point reaching 0.9 / 0.95 recall."""
    print(f"{'config':>15} {'build s':>8} {'MiB':>7} {'B/vec':>6} {'peak+MiB':>9} "
          f"{'QPS@0.90':>9} {'x':>6} {'QPS@0.95':>9} {'x':>6} {'max recall':>10}")
    for name, c in results["configs"].items():
        cells = []
        for target in (0.90, 0.95):
            ok = [p for p in c["points"] if p["recall"] >= target]
            best = max(ok, key=lambda p: p["qps"]) if ok else None
            cells += [f"{best['qps']:>9.0f}", f"{best['speedup']:>5.1f}x"] if best else \
                [f"{'-':>9}", f"{'-':>6}"]
        print(f"{name:>15} {c['build_s']:>8.1f} {c['index_bytes'] / 2**20:>7.1f} "
              f"{c['index_bytes'] / results['n']:>6.1f} {c['peak_rss_growth_mib']:>9.0f} "
              f"{' '.join(cells)} {max(p['recall'] for p in c['points']):>10.4f}")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name, c in results["configs"].items():
        pts = c["points"]
        style = "*" if name == "flat" else "o-"
        ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], style, label=name,
                markersize=10 if name == "flat" else 4)
    ax.set_yscale("log")
    ax.set_xlabel(f"recall@{results['k']} (vs exact search)")
    ax.set_ylabel("queries per second (batch of 1,000)")
    ax.set_title(f"{results['n']:,} CIFAR-10 view features, {results['dim']}-d cosine, "
                 f"{results['faiss_threads']} faiss thread(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="base vectors")
    parser.add_argument("--dim", type=int, default=64, help="feature dimension (PCA)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out query images")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--data", choices=("cifar10",), default="cifar10")
    parser.add_argument("--model", choices=("simclr", "untrained"), default="simclr")
    parser.add_argument("--epochs", type=int, default=5, help="SimCLR training epochs")
    parser.add_argument("--chunk", type=int, default=20_000, help="rows embedded at a time")
    parser.add_argument("--pq-m", type=int, nargs="*", default=[8, 16, 32],
                        help="IVF-PQ code sizes (sub-quantizers, 1 byte each)")
    parser.add_argument("--opq-m", type=int, nargs="*", default=[8, 16],
                        help="code sizes of --pq-m also built with an OPQ rotation")
    parser.add_argument("--repeats", type=int, default=2, help="timed searches (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads")
    parser.add_argument("--faiss-threads", type=int, default=1, help="faiss threads")
    parser.add_argument("--stage", choices=("all", "features", "indexes"), default="all")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=HERE / "out" / "scale_index")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.faiss_threads)
    started = time.perf_counter()
    with threadpool_limits(args.threads):
        base_path, queries = make_features(args)
    if args.stage == "features":
        return
    with threadpool_limits(args.faiss_threads):
        results = run_indexes(args, base_path, queries)
    results["index_stage_s"] = time.perf_counter() - started
    summary(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_index.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "scale_index.png")
    print(f"\nwrote {args.out / 'scale_index.json'} and {args.out / 'scale_index.png'}; "
          f"total {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
