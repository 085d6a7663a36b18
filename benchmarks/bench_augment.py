"""Time two augmented views of a CIFAR-10 batch: featurekit vs the alternatives.

The recipe is SimCLR's for CIFAR-10 (crop 32 at scale (0.2, 1), flip, colour
jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2), run three ways:

(a) ``featurekit.data.augment``: batched, per-sample parameters;
(b) ``torchvision.transforms.v2`` called once per image, as a Dataset would;
(c) kornia's ``AugmentationSequential``, when kornia is installed.

Runs alternate (a, b, c, a, b, c, ...) after a warm-up so that drift in the
machine's speed hits every contender alike; medians are reported.

Run from anywhere: ``python benchmarks/bench_augment.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from featurekit.data.augment import (
    ColorJitter,
    Compose,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/cifar10_test.npz"
N_VIEWS = 2


def load_batch(path: Path, batch_size: int) -> torch.Tensor:
    """A random (not class-sorted) batch of CIFAR-10 as floats in [0, 1], NCHW."""
    with np.load(path, allow_pickle=False) as data:
        images = data["x"]
    # The file is grouped by class; a random draw gives a realistic colour mix.
    index = np.random.default_rng(0).choice(len(images), batch_size, replace=False)
    batch = torch.from_numpy(images[index]).permute(0, 3, 1, 2).contiguous()
    return batch.float().div_(255)


def featurekit_views(batch: torch.Tensor) -> Callable[[], list[torch.Tensor]]:
    recipe = Compose(
        [
            RandomResizedCrop(32, scale=(0.2, 1.0)),
            RandomHorizontalFlip(0.5),
            ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            RandomGrayscale(0.2),
        ]
    )
    generator = torch.Generator(device=batch.device).manual_seed(0)
    return lambda: [recipe(batch, generator) for _ in range(N_VIEWS)]


def torchvision_views(batch: torch.Tensor) -> Callable[[], list[torch.Tensor]]:
    from torchvision.transforms import v2

    recipe = v2.Compose(
        [
            v2.RandomResizedCrop(32, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(0.2),
        ]
    )
    return lambda: [torch.stack([recipe(image) for image in batch]) for _ in range(N_VIEWS)]


def kornia_views(batch: torch.Tensor) -> Callable[[], list[torch.Tensor]]:
    import kornia.augmentation as K

    recipe = K.AugmentationSequential(
        K.RandomResizedCrop((32, 32), scale=(0.2, 1.0)),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
    )
    return lambda: [recipe(batch) for _ in range(N_VIEWS)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cifar10_test.npz")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    batch = load_batch(args.data, args.batch_size)
    contenders: dict[str, Callable[[], list[torch.Tensor]]] = {
        "featurekit": featurekit_views(batch),
        "torchvision.v2 loop": torchvision_views(batch),
    }
    try:
        contenders["kornia"] = kornia_views(batch)
    except ImportError:
        print("kornia: not installed")

    times: dict[str, list[float]] = {name: [] for name in contenders}
    with torch.inference_mode():
        for round_ in range(args.warmup + args.repeats):
            for name, run in contenders.items():
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
                if round_ >= args.warmup:
                    times[name].append(elapsed)

    print(
        f"{args.batch_size} CIFAR-10 images, {N_VIEWS} views each, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} alternating runs"
    )
    ours = statistics.median(times["featurekit"])
    print(f"{'':22}{'ms/batch':>10}{'views/s':>10}{'featurekit speed-up':>21}")
    for name, samples in times.items():
        median = statistics.median(samples)
        views_per_s = N_VIEWS * args.batch_size / median
        print(f"{name:22}{1e3 * median:10.1f}{views_per_s:10.0f}{median / ours:20.1f}x")


if __name__ == "__main__":
    main()
