"""Soak: does memory stay flat while ``transform`` runs over many images?

A fitted ``small_cnn`` model (``featurekit.create("pretrained")``, so there is
no training time) transforms CIFAR-10 test images in ``--rounds`` rounds of
``--chunk`` images (default 10 x 10,000 = 100,000 images), with the process's
resident memory (RSS, from ``/proc/self/statm``) sampled every 50 ms by a
background thread. The same rounds then run through a bare torch loop (the
same backbone, eval mode, no grad, the same batch size) as the baseline.

Printed, per contender: the peak RSS of the first round (after warm-up
allocations), the peak over the last half of the rounds, their ratio
(1.00 = flat), and the throughput. A leak of even one batch's output per
round shows as a ratio above 1. Takes about 3 minutes on 2 CPU cores::

    python benchmarks/bench_soak.py [--rounds 10] [--chunk 10000] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

import featurekit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_test.npz"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Sampler:
    """Records the peak RSS since the last ``reset``, sampled in a thread."""

    def __init__(self, every: float = 0.05) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.every)

    def reset(self) -> int:
        peak, self.peak = max(self.peak, rss_bytes()), rss_bytes()
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def soak(name: str, run_chunk, images: np.ndarray, rounds: int, sampler: Sampler) -> dict:
    run_chunk(images[:512])  # warm-up: allocator pools, lazy initialisation
    sampler.reset()
    peaks, started = [], time.perf_counter()
    for _ in range(rounds):
        out = run_chunk(images)
        assert np.isfinite(out).all()
        del out
        peaks.append(sampler.reset())
    seconds = time.perf_counter() - started
    first, late = peaks[0], max(peaks[len(peaks) // 2:])
    row = {"name": name, "first": first, "late": late, "ratio": late / first,
           "images_per_s": rounds * len(images) / seconds}
    print(f"  {name:<22} first round {first / 2**20:8.1f} MiB   last half {late / 2**20:8.1f} MiB"
          f"   ratio {row['ratio']:.3f}   {row['images_per_s']:7.0f} images/s")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    with np.load(args.data) as d:
        images = d["x"]
    images = images[np.arange(args.chunk) % len(images)]
    est = featurekit.create("pretrained", backbone="small_cnn", device="cpu", random_state=0,
                            inference_batch_size=args.batch_size, verbose=0).fit(images[:256])
    backbone = est.modules_["backbone"].eval()
    mean = torch.tensor(est.input_spec_.mean).view(1, -1, 1, 1)
    std = torch.tensor(est.input_spec_.std).view(1, -1, 1, 1)

    def raw_torch(chunk: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(chunk), args.batch_size):
                x = torch.from_numpy(chunk[i:i + args.batch_size]).permute(0, 3, 1, 2)
                x = (x.float().div_(255) - mean) / std
                out.append(backbone(x.contiguous(memory_format=torch.channels_last)).numpy())
        return np.concatenate(out)

    print(f"{args.rounds} rounds x {len(images):,} CIFAR-10 images ({args.rounds * len(images):,} "
          f"in all), small_cnn, batch {args.batch_size}, {torch.get_num_threads()} threads\n")
    sampler = Sampler()
    rows = [soak("featurekit transform", est.transform, images, args.rounds, sampler),
            soak("raw torch loop", raw_torch, images, args.rounds, sampler)]
    sampler.stop()
    fk, raw = rows
    print(f"\nfeaturekit's memory growth over the run: {fk['ratio']:.3f}x (raw torch "
          f"{raw['ratio']:.3f}x); its throughput {fk['images_per_s'] / raw['images_per_s']:.2f}x "
          "the raw loop's")


if __name__ == "__main__":
    main()
