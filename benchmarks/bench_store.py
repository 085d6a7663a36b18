"""Feature store speed and the streaming extraction's memory.

1. Writing ``--n`` x ``--width`` float32 features (default 100,000 x 512,
   205 MB) in batches of ``--batch-size`` rows:

   (a) featurekit: ``FeatureStore(path, "w").append(batch)`` per batch (ids
       generated, every append validated and flushed);
   (b) h5py: what a user would write by hand with the same datasets: chunked,
       resizable ``features`` and ``ids`` with the very chunk shapes and
       filters FeatureStore chose, then per batch ``resize``, two slice
       writes and ``flush``;
   (c) parts: the same rows written as extraction writes them: parts of
       16,384 rows, each synced and renamed, and the index rewritten after
       each (the price of crash safety).

   Runs alternate (a, b, c, a, b, c, ...) after one warm-up each, each into a
   fresh file that is deleted afterwards; medians are printed with the speed
   ratio featurekit / h5py (target: at least 0.8). The CPU time (this
   process's) is printed too: on a shared machine the wall time of writes
   into the page cache varies by tens of percent from run to run.

2. Compressibility of real features: ``--compression`` sizes and write
   times for features of CIFAR-10 images from a small CNN (untrained),
   showing why the store does not compress by default.

3. Peak resident memory (``ru_maxrss``) of ``featurekit.store.extract``
   at N and 10 N CIFAR-10 images (tiled past 10,000) read from an HDF5
   file, one fresh process each, beside ``transform`` of the loaded array.
   About 1 GB of it is torch itself, so N must be large enough for the
   data to show: 10 N images are 10 N x 3 KB.

Run from anywhere::

    python benchmarks/bench_store.py [--n 100000] [--width 512] [--batch-size 1024]
        [--repeats 5] [--compression lzf] [--memory-n 5000] [--tmp DIR]
        [--only writes|compression|memory ...]

with ``OMP_NUM_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np

from featurekit import store_parts
from featurekit.store import FeatureStore

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_featurekit(path: Path, batches: list[np.ndarray], compression: str | None) -> None:
    with FeatureStore(path, "w", compression=compression) as store:
        for batch in batches:
            store.append(batch)


def write_h5py(path: Path, batches: list[np.ndarray], compression: str | None,
               chunks: dict[str, tuple[int, ...]]) -> None:
    width = batches[0].shape[1]
    with h5py.File(path, "w") as f:
        feats = f.create_dataset("features", (0, width), np.float32, maxshape=(None, width),
                                 chunks=chunks["features"], compression=compression,
                                 shuffle=compression is not None)
        ids = f.create_dataset("ids", (0,), np.int64, maxshape=(None,), chunks=chunks["ids"],
                               compression=compression, shuffle=compression is not None)
        n = 0
        for batch in batches:
            feats.resize(n + len(batch), axis=0)
            feats[n:] = batch
            ids.resize(n + len(batch), axis=0)
            ids[n:] = np.arange(n, n + len(batch))
            n += len(batch)
            f.flush()


def write_parts(path: Path, batches: list[np.ndarray], compression: str | None,
                part_size: int = 16384) -> None:
    rows_per_batch = len(batches[0])
    per_part = max(1, part_size // rows_per_batch)
    done, start = [], 0
    with store_parts.locked(path):
        for index, first in enumerate(range(0, len(batches), per_part)):
            group = batches[first:first + per_part]
            stop = start + sum(len(b) for b in group)
            blocks = ({"features": b, "ids": np.arange(s, s + len(b))}
                      for b, s in zip(group, np.cumsum([start] + [len(b) for b in group])))
            done.append(store_parts.write_part(path, index, start, stop, blocks, info={},
                                         dtype=np.float32, compression=compression))
            store_parts.write_index(path, done, {}, part_size=per_part * rows_per_batch,
                              n_samples=None)
            start = stop


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    shutil.rmtree(store_parts.parts_dir(path), ignore_errors=True)


def bench_writes(args: argparse.Namespace, tmp: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.width), dtype=np.float32)
    batches = [x[i:i + args.batch_size] for i in range(0, args.n, args.batch_size)]
    probe = tmp / "probe.h5"
    write_featurekit(probe, batches[:1], args.compression)
    with h5py.File(probe) as f:
        chunks = {"features": f["features"].chunks, "ids": f["ids"].chunks}
    remove(probe)
    sides = {
        "featurekit": lambda p: write_featurekit(p, batches, args.compression),
        "h5py": lambda p: write_h5py(p, batches, args.compression, chunks),
        "parts": lambda p: write_parts(p, batches, args.compression),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, write in sides.items():
            path = tmp / f"{name}.h5"
            started, started_cpu = time.perf_counter(), time.process_time()
            write(path)
            elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
            remove(path)
            if repeat:
                times[name].append(elapsed)
                cpu[name].append(elapsed_cpu)
    mb = x.nbytes / 1e6
    print(f"writing {args.n:,} x {args.width} float32 ({mb:.0f} MB) in batches of "
          f"{args.batch_size}, compression={args.compression}, chunks {chunks['features']}; "
          f"median of {args.repeats} alternated runs")
    medians = {name: statistics.median(t) for name, t in times.items()}
    cpu_medians = {name: statistics.median(t) for name, t in cpu.items()}
    for name, seconds in medians.items():
        print(f"  {name:<11} {seconds:7.3f} s  {mb / seconds:7.0f} MB/s  "
              f"(CPU {cpu_medians[name]:.3f} s)   runs: "
              + " ".join(f"{t:.3f}" for t in times[name]))
    ratios = [b / a for a, b in zip(times["featurekit"], times["h5py"])]
    print(f"  speed featurekit / h5py: median of per-round ratios "
          f"{statistics.median(ratios):.2f}x (ratio of medians "
          f"{medians['h5py'] / medians['featurekit']:.2f}x; of CPU times "
          f"{cpu_medians['h5py'] / cpu_medians['featurekit']:.2f}x); parts / h5py: "
          f"{medians['h5py'] / medians['parts']:.2f}x")


def real_features(n: int) -> np.ndarray:
    import torch

    import featurekit

    torch.manual_seed(0)
    with np.load(DATA_DIR / "cifar10_test.npz") as d:
        images = d["x"][:n]
    est = featurekit.create("pretrained", backbone="small_cnn", backbone_kwargs={"width": 32},
                            random_state=0, verbose=0, device="cpu")
    return est.fit(images).transform(images)


def bench_compression(args: argparse.Namespace, tmp: Path) -> None:
    features = real_features(args.compression_n)
    batches = [features[i:i + 1024] for i in range(0, len(features), 1024)]
    print(f"compressing {features.shape[0]:,} x {features.shape[1]} real features "
          f"(CIFAR-10, small_cnn width 32, {np.mean(features == 0):.0%} zeros):")
    for compression in (None, "lzf", "gzip"):
        path = tmp / "c.h5"
        seconds = []
        for _ in range(3):
            remove(path)
            started = time.perf_counter()
            write_featurekit(path, batches, compression)
            seconds.append(time.perf_counter() - started)
        with h5py.File(path) as f:
            stored = f["features"].id.get_storage_size()
        remove(path)
        print(f"  {str(compression):<5} {stored / features.nbytes:6.1%} of the raw size, "
              f"write {statistics.median(seconds) * 1e3:6.1f} ms")


MEMORY_CHILD = textwrap.dedent("""
    import os, resource, sys, threading
    import h5py, torch
    import featurekit
    from featurekit.store import extract

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    torch.set_num_threads(1)
    model, data, out, how = sys.argv[1:5]
    est = featurekit.load(model)
    start, peak, done = rss(), 0, threading.Event()

    def sample():  # torch and h5py release the GIL: a thread sees the peaks
        global peak
        while not done.wait(0.002):
            peak = max(peak, rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with h5py.File(data, "r") as f:
        if how == "extract":
            extract(est, f["x"], out, part_size=4096, batch_size=256, verbose=0)
        else:
            est.transform(f["x"][:])
    done.set()
    sampler.join()
    peak = max(peak, rss())
    print(peak - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def bench_memory(args: argparse.Namespace, tmp: Path) -> None:
    import featurekit

    with np.load(DATA_DIR / "cifar10_test.npz") as d:
        images = d["x"]
    sizes = (args.memory_n, 10 * args.memory_n)
    if sizes[1] > len(images):
        images = np.concatenate([images] * -(-sizes[1] // len(images)))
    est = featurekit.create("pretrained", backbone="small_cnn", backbone_kwargs={"width": 8},
                            random_state=0, verbose=0, device="cpu").fit(images[:64])
    est.save(tmp / "m.pt")
    print(f"peak memory, CIFAR-10 images from HDF5 (N={sizes[0]:,} and 10 N), small_cnn width 8, "
          "one process per run (Linux):")
    for how in ("extract", "transform"):
        peaks = {}
        for n in sizes:
            data, out = tmp / f"x{n}.h5", tmp / f"f{n}.h5"
            with h5py.File(data, "w") as f:
                f["x"] = images[:n]
            result = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(tmp / "m.pt"),
                                     str(data), str(out), how],
                                    capture_output=True, text=True, check=True)
            extra, peak = map(int, result.stdout.split())
            peaks[n] = peak
            remove(out)
            data.unlink()
            print(f"  {how:<9} N={n:>6,}: ru_maxrss {peak / 1024:7.1f} MiB; resident memory "
                  f"above the loaded model at most {extra / 2**20:6.1f} MiB")
        print(f"  {how:<9} ru_maxrss 10 N / N: {peaks[sizes[1]] / peaks[sizes[0]]:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compression", choices=["lzf", "gzip"], default=None)
    parser.add_argument("--compression-n", type=int, default=4096)
    parser.add_argument("--memory-n", type=int, default=5000)
    parser.add_argument("--only", action="append", choices=["writes", "compression", "memory"],
                        help="Run only this part (repeatable); default: all three.")
    parser.add_argument("--tmp", type=Path, default=None,
                        help="Folder for the files (default: a temporary one).")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_", dir=args.tmp))
    try:
        only = args.only or ["writes", "compression", "memory"]
        for name, bench in (("writes", bench_writes), ("compression", bench_compression),
                            ("memory", bench_memory)):
            if name in only:
                bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
