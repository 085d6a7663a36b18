"""Time ``transform`` of a fitted featurekit extractor against a plain torch loop.

Both sides run the very same ``nn.Module`` (``est.backbone_`` of a
``featurekit.create("pretrained", backbone=...)`` fitted on the images) over
the same images:

(a) featurekit: ``est.transform(x)`` on the uint8 array;
(b) torch: what a user would write by hand: the whole uint8 array converted
    with ``torch.from_numpy(x).float().div(255)``, channels moved to axis 1,
    normalized with ``est.input_spec_.mean/std``, then
    ``model(batch).numpy()`` chunk by chunk under ``torch.no_grad()`` in eval
    mode, and the chunks concatenated.

The two outputs are checked to agree (``np.allclose``, atol 1e-4). Runs
alternate (a, b, a, b, ...) after one warm-up each, so drift in the machine's
speed hits both alike; medians are reported with the throughput ratio
featurekit / torch (above 1: featurekit is faster). Peak extra resident
memory of each side is sampled in one separate, untimed run (Linux only).

The median minor page faults per run are printed too. With glibc's malloc,
the per-batch activations (tens of MB) are sometimes handed back to the OS
and faulted in again, which can cost a quarter of a run on a small CPU and
depends on the allocation history rather than on the code timed. When the
two sides' page faults differ by 1e5 or more, compare them again with the
allocator pinned::

    MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \
        python benchmarks/bench_transform.py ...

Run from anywhere::

    python benchmarks/bench_transform.py [--backbone small_cnn] [--data cifar10]
        [--n 4096] [--batch-size 256] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import featurekit

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_images(data_dir: Path, data: str, n: int) -> np.ndarray:
    """``n`` images drawn at random (the files are grouped by class), as stored: uint8."""
    with np.load(data_dir / f"{data}_test.npz", allow_pickle=False) as d:
        images = d["x"]
    if n > len(images):
        raise SystemExit(f"--n {n} is more than the {len(images)} images of {data}")
    index = np.sort(np.random.default_rng(0).choice(len(images), n, replace=False))
    return np.ascontiguousarray(images[index])


def plain_torch_loop(model: torch.nn.Module, x: np.ndarray, mean: tuple[float, ...],
                     std: tuple[float, ...], working_shape: tuple[int, ...],
                     batch_size: int) -> np.ndarray:
    """The straightforward hand-written inference loop (the baseline)."""
    device = next(model.parameters()).device
    images = torch.from_numpy(x).float().div(255)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    if tuple(images.shape[-2:]) != tuple(working_shape[-2:]):
        # Only when the backbone needs larger images than the data has.
        images = F.interpolate(images, size=working_shape[-2:], mode="bilinear",
                               antialias=True, align_corners=False)
    images = (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device)
            outputs.append(model(batch).cpu().numpy())
    return np.concatenate(outputs)


def _minor_page_faults() -> int:
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_memory(run: Callable[[], object]) -> float | None:
    """Peak resident memory above the starting level while ``run()`` runs, in MiB.

    Sampled every half millisecond from a thread (torch releases the GIL in
    its kernels), so it is approximate; None where /proc is missing (not Linux).
    """
    if not os.path.exists("/proc/self/statm"):
        return None
    gc.collect()
    try:
        # Hand freed heap pages back to the OS: otherwise glibc keeps what the
        # previous run freed and this run reuses it without any rise in RSS.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    start = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = run()
    peak = max(peak, _rss_bytes())
    done.set()
    sampler.join()
    del result
    return (peak - start) / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="small_cnn", help="a registered image backbone")
    parser.add_argument("--data", choices=("mnist", "cifar10"), default="cifar10")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder holding {mnist,cifar10}_test.npz")
    parser.add_argument("--n", type=int, default=4096, help="number of images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    x = load_images(args.data_dir, args.data, args.n)
    # precision="32": the baseline runs in float32, so featurekit must too (its
    # "auto" would pick bf16 autocast on CUDA and the features could not match).
    est = featurekit.create("pretrained", backbone=args.backbone, random_state=0, verbose=0,
                            inference_batch_size=args.batch_size, precision="32").fit(x)
    spec = est.input_spec_
    model = est.backbone_
    device = next(model.parameters()).device
    contenders: dict[str, Callable[[], np.ndarray]] = {
        "featurekit": lambda: est.transform(x),
        "torch": lambda: plain_torch_loop(model, x, spec.mean, spec.std, spec.working_shape,
                                          args.batch_size),
    }

    print(f"transform: {args.n} {args.data} images {tuple(x.shape[1:])}, backbone "
          f"{args.backbone} (working shape {tuple(spec.working_shape)}), batch {args.batch_size}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"median of {args.repeats} alternating runs after 1 warm-up each")

    ours, theirs = (run() for run in contenders.values())  # the warm-up
    if ours.shape != theirs.shape:
        print(f"features match: False (shapes {ours.shape} and {theirs.shape})")
    else:
        print(f"features match: {np.allclose(ours, theirs, atol=1e-4)} (shape {ours.shape}, "
              f"max abs diff {float(np.abs(ours - theirs).max()):.2e})")
    del ours, theirs

    times: dict[str, list[float]] = {name: [] for name in contenders}
    faults: dict[str, list[int]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            faults_before = _minor_page_faults()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            faults[name].append(_minor_page_faults() - faults_before)

    memory = {name: peak_extra_memory(run) for name, run in contenders.items()}
    # min and max show how noisy the machine was; page faults show when the
    # allocator, not the code, made the difference (see the module docstring).
    print(f"{'':12}{'median s':>9}{'min s':>8}{'max s':>8}{'images/s':>10}"
          f"{'page faults':>13}{'peak extra MiB':>16}")
    for name, samples in times.items():
        median = statistics.median(samples)
        mib = "n/a" if memory[name] is None else f"{memory[name]:.0f}"
        print(f"{name:12}{median:9.3f}{min(samples):8.3f}{max(samples):8.3f}"
              f"{args.n / median:10.0f}{statistics.median(faults[name]):13.0f}{mib:>16}")
    ratio = statistics.median(times["torch"]) / statistics.median(times["featurekit"])
    print(f"ratio featurekit/torch (images/s): {ratio:.2f}x (above 1: featurekit is faster)")


if __name__ == "__main__":
    main()
