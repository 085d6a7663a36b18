"""Sharded extraction: wall time of 1 vs N processes writing one feature store.

A ``small_cnn`` model (``featurekit.create("pretrained")``, no training)
extracts ``--n`` CIFAR-10 images (the 10,000 test images, tiled past that;
default 20,000) into a parted store, with 1 and with N processes (default
``--nproc 1 2``), alternating, ``--repeats`` times, each into a fresh store.
Two walls are timed:

- **command**: ``featurekit extract MODEL DATA -o OUT --nproc N`` from an
  ``.npz``, as a user runs it. With N > 1 the parent starts N worker
  processes, each importing torch and the plugins and loading the model and
  the data before it extracts: a fixed cost per process that sharding does
  not shorten (tens of seconds on a busy 2-core machine).
- **extraction**: the same N processes (``extract(..., shard=(rank, N))``;
  ``shard=None`` for 1), started, loaded and waiting at a barrier before the
  clock starts; it stops when the last one has returned. This is the part
  sharding divides, what a long extraction is made of.

Printed: the median of each, the images per second, and the speed-up
(time with 1 / time with N). Each store is checked complete, ids 0..n-1,
and features equal to those of the first run. Each process gets
``cores // N`` threads, capped by an ``OMP_NUM_THREADS`` already set (the
CLI's rule), so with ``OMP_NUM_THREADS=1`` one process runs one thread and
two run one each. The load average is printed before and after: other work
on the machine takes cores from the processes. Run from anywhere::

    OMP_NUM_THREADS=1 python benchmarks/bench_sharded_extract.py [--n 20000]
        [--nproc 1 2] [--repeats 3] [--part-size 2048] [--batch-size 256] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

import featurekit
from featurekit.store import FeatureStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_test.npz"
CLI = [sys.executable, "-c", "from featurekit.cli import main; main()"]
WORKER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import torch
    import featurekit
    from featurekit.store import extract

    model, data, out, rank, world, barrier, threads, part_size, batch_size = sys.argv[1:]
    rank, world = int(rank), int(world)
    torch.set_num_threads(int(threads))
    est, x = featurekit.load(model), np.load(data)["x"]
    open(os.path.join(barrier, f"ready-{rank}"), "w").close()
    while not os.path.exists(os.path.join(barrier, "go")):
        time.sleep(0.002)
    extract(est, x, out, part_size=int(part_size), batch_size=int(batch_size), verbose=0,
            shard=None if world == 1 else (rank, world))
    print(time.time())
""")


def threads_per_process(nproc: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // nproc)
    given = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(given)) if given.isdigit() and int(given) else threads


def command_wall(model: Path, data: Path, out: Path, nproc: int, args: argparse.Namespace
                 ) -> float:
    started = time.perf_counter()
    done = subprocess.run([*CLI, "extract", str(model), str(data), "-o", str(out), "-q",
                           "--nproc", str(nproc), "--part-size", str(args.part_size),
                           "--batch-size", str(args.batch_size)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"featurekit extract failed:\n{done.stdout}{done.stderr}")
    return seconds


def extraction_wall(model: Path, data: Path, out: Path, nproc: int, args: argparse.Namespace
                    ) -> float:
    barrier = Path(tempfile.mkdtemp(dir=out.parent))
    workers = [subprocess.Popen(
        [sys.executable, "-c", WORKER, str(model), str(data), str(out), str(rank), str(nproc),
         str(barrier), str(threads_per_process(nproc)), str(args.part_size),
         str(args.batch_size)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(nproc)]
    while len(list(barrier.glob("ready-*"))) < nproc:
        if any(w.poll() for w in workers):
            break
        time.sleep(0.01)
    go = time.time()
    (barrier / "go").touch()
    ends = []
    for worker in workers:
        stdout, stderr = worker.communicate()
        if worker.returncode:
            sys.exit(f"a worker failed:\n{stderr}")
        ends.append(float(stdout.split()[-1]))
    shutil.rmtree(barrier)
    return max(ends) - go


def check_and_remove(out: Path, n: int, reference: list) -> None:
    with FeatureStore(out) as store:
        assert store.complete and np.array_equal(store.ids[:], np.arange(n))
        features = store[:]
    if not reference:
        reference.append(features)
    np.testing.assert_allclose(features, reference[0], rtol=1e-5, atol=1e-6)
    shutil.rmtree(out.with_name(out.name + ".parts"))
    out.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--part-size", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_sharded_", dir=args.tmp))
    try:
        with np.load(args.data) as d:
            images = d["x"][np.arange(args.n) % len(d["x"])]
        data, model = folder / "images.npz", folder / "small_cnn.pt"
        np.savez(data, x=images)
        featurekit.create("pretrained", backbone="small_cnn", device="cpu", random_state=0,
                          verbose=0).fit(images[:256]).save(model)
        print(f"{args.n:,} CIFAR-10 images, small_cnn, parts of {args.part_size}, batch "
              f"{args.batch_size}; {os.cpu_count()} cores, OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, threads per process "
              f"{ {n: threads_per_process(n) for n in args.nproc} }, load average "
              f"{os.getloadavg()[0]:.1f}\n")
        walls = {kind: {n: [] for n in args.nproc} for kind in ("command", "extraction")}
        reference: list = []
        for repeat in range(args.repeats):
            for kind, timer in (("command", command_wall), ("extraction", extraction_wall)):
                for nproc in args.nproc:
                    out = folder / f"feats-{kind}-{nproc}.h5"
                    walls[kind][nproc].append(timer(model, data, out, nproc, args))
                    check_and_remove(out, args.n, reference)
                    print(f"  repeat {repeat + 1}: {kind:<10} {nproc} process"
                          f"{'es' if nproc > 1 else ''}: {walls[kind][nproc][-1]:6.1f} s",
                          flush=True)

        print(f"\n{'':<10}  {'processes':>9}  {'median wall':>11}  {'images/s':>8}  "
              f"{'speed-up':>8}")
        for kind, by_n in walls.items():
            base = statistics.median(by_n[args.nproc[0]])
            for nproc, times in by_n.items():
                wall = statistics.median(times)
                print(f"{kind:<10}  {nproc:>9}  {wall:>9.1f} s  {args.n / wall:>8.0f}  "
                      f"{base / wall:>7.2f}x")
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
