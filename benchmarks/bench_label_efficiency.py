"""Label efficiency: what self-supervised pretraining buys when labels are few.

On the standard split of cifar10_test.npz (8,000 training and 2,000 test
images, ../shared/data/README.md), one self-supervised model (SimCLR by
default) is pretrained on all 8,000 training images without their labels and
saved with ``est.save``. Then, for each fraction of the training labels
(a class-stratified subset, the same for every approach), three approaches
are scored on the 2,000 test images:

- **supervised, scratch**: ``featurekit.create("supervised", augment=True)``
  trained on the labelled subset from a random initialization;
- **linear probe, SSL**: a logistic regression on the frozen self-supervised
  features of the labelled subset (``featurekit.evaluate.linear_probe_accuracy``);
- **SSL, fine-tuned**: the same supervised estimator created with
  ``weights=<the saved SSL model>``, so it starts from the pretrained backbone
  and trains everything, with the very same recipe as from scratch.

Both supervised runs get the same number of optimizer steps (``--sup-steps``)
whatever the fraction, so a small labelled set is seen for more epochs rather
than trained less. Prints a table (and writes ``--plot`` and ``--json``).
CPU defaults run in about 20 minutes on 2 cores; the GPU variant adds the 1%
fraction and a larger budget::

    python benchmarks/bench_label_efficiency.py [--fractions 0.1 1.0] [--ssl simclr]
        [--ssl-epochs 15] [--sup-steps 600] [--batch-size 128] [--backbone small_cnn]
        [--plot label_efficiency.png] [--json label_efficiency.json]
    python benchmarks/bench_label_efficiency.py --device cuda --precision bf16 \\
        --backbone resnet18 --fractions 0.01 0.1 1.0 --ssl-epochs 100 --sup-steps 3000
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

import featurekit
from featurekit.datasets import standard_split
from featurekit.evaluate import format_table, linear_probe_accuracy

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
APPROACHES = ("supervised, scratch", "linear probe, SSL", "SSL, fine-tuned")


def labelled_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A class-stratified subset with ``fraction`` of the labels (at least one per class)."""
    if fraction >= 1:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        keep.append(rng.choice(rows, max(1, round(fraction * len(rows))), replace=False))
    return np.sort(np.concatenate(keep))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="cifar10", choices=("cifar10", "mnist"))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.1, 1.0])
    parser.add_argument("--ssl", default="simclr", help="a registered self-supervised method")
    parser.add_argument("--ssl-epochs", type=int, default=15)
    parser.add_argument("--sup-steps", type=int, default=600,
                        help="optimizer steps of every supervised run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=None, help="PNG of accuracy vs labels")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with np.load(args.data_dir / f"{args.data}_test.npz", allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    train, test = standard_split(y)
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    common = dict(backbone=args.backbone, batch_size=args.batch_size, device=args.device,
                  precision=args.precision, random_state=args.seed, verbose=0)

    t0 = time.perf_counter()
    ssl = featurekit.create(args.ssl, max_epochs=args.ssl_epochs, **common).fit(x_train)
    ssl_time = time.perf_counter() - t0
    print(f"{args.ssl} pretrained on {len(x_train)} unlabelled images, {args.ssl_epochs} "
          f"epochs: {ssl_time:.0f} s", flush=True)
    f_train, f_test = ssl.transform(x_train), ssl.transform(x_test)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"{args.ssl}.pt"
        ssl.save(weights)
        for fraction in args.fractions:
            keep = labelled_subset(y_train, fraction, args.seed)
            epochs = max(1, math.ceil(args.sup_steps / max(1, len(keep) // args.batch_size)))
            scores = {}
            for name, extra in (("supervised, scratch", {}),
                                ("SSL, fine-tuned", {"weights": weights})):
                t0 = time.perf_counter()
                sup = featurekit.create("supervised", augment=True, max_epochs=epochs,
                                        **common, **extra).fit(x_train[keep], y_train[keep])
                scores[name] = sup.score(x_test, y_test)
                print(f"{fraction:6.0%} labels ({len(keep)}), {name}: {scores[name]:.3f} "
                      f"({epochs} epochs, {time.perf_counter() - t0:.0f} s)", flush=True)
            scores["linear probe, SSL"] = linear_probe_accuracy(
                f_train[keep], y_train[keep], f_test, y_test)
            for name in APPROACHES:
                rows.append({"labels": f"{fraction:.0%} ({len(keep)})", "approach": name,
                             "accuracy": scores[name]})

    print(f"\n{args.data}, {args.backbone}, SSL = {args.ssl} ({args.ssl_epochs} epochs on all "
          f"{len(x_train)} training images), {args.sup_steps} supervised steps of batch "
          f"{args.batch_size}; test accuracy on the {len(x_test)} standard test images\n")
    print(format_table(rows, ["labels", "approach", "accuracy"]))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"config": config, "rows": rows}, indent=1))
    if args.plot:
        plot(rows, args)


def plot(rows: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, marker in zip(APPROACHES, "osD"):
        points = [(f, r["accuracy"]) for f, r in
                  zip([f for f in args.fractions for _ in APPROACHES], rows)
                  if r["approach"] == name]
        ax.plot([100 * f for f, _ in points], [100 * a for _, a in points], marker=marker,
                label=name)
    ax.set_xscale("log")
    ax.set_xticks([100 * f for f in args.fractions],
                  [f"{100 * f:g}%" for f in args.fractions])
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{args.data}: {args.ssl} pretraining, {args.backbone}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
