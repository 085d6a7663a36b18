"""SimCLR and BYOL in featurekit against the same methods written with lightly.

The peer side is what a lightly user writes from lightly's own examples
(``examples/pytorch/simclr.py`` and ``byol.py``): lightly's transforms
(``SimCLRTransform``, ``BYOLView1Transform``/``BYOLView2Transform``) on PIL
images in a ``DataLoader``, lightly's heads (``SimCLRProjectionHead``,
``BYOLProjectionHead``, ``BYOLPredictionHead``), losses (``NTXentLoss``,
``NegativeCosineSimilarity``), ``update_momentum`` with ``cosine_schedule``
and ``CosineWarmupScheduler``. Both sides share everything else:

- the very same backbone module, built by featurekit's registry (``small_cnn``
  by default; ResNet-18 with the small-image stem with ``--backbone resnet18``);
- batch size, epochs, the optimizer featurekit resolved (AdamW, its lr and
  weight decay, 10% linear warm-up then cosine, stepped per batch), seed;
- the augmentation settings: featurekit's defaults written as lightly
  arguments (SimCLR: crop scale 0.2-1, flip, jitter 0.4/0.4/0.4/0.1 with
  p=0.8, grey p=0.2, no blur at 32 px; BYOL: crop 0.2-1, jitter
  0.4/0.4/0.2/0.1, view 2 solarized with p=0.2, no blur at 32 px);
- the heads' sizes (SimCLR 256-256-128; BYOL projector and predictor with a
  512 hidden layer to 256), the loss temperature (0.5) and BYOL's EMA rate
  (0.99 to 1 on a cosine);
- per-channel normalization from the training images, and the evaluation:
  backbone features in eval mode, a weighted 20-NN classifier on cosine
  similarity (``featurekit.evaluate.knn_accuracy``) fitted on the training
  subset and scored on the 2,000 standard test images.

Two parts:

``throughput``: per library, 10 warm-up steps, then 100 timed steps
(featurekit: a 10-step fit, then a timed 100-step fit, set-up included;
lightly: 10 steps of the loop, then 100 timed), featurekit and lightly
alternated ``--repeats`` times (3); the median of the per-round ratios
lightly time / featurekit time (above 1: featurekit is faster).

``quality``: each method on a ``--n`` (2,000) image subset of the standard
training split, ``--seeds`` (0 1 2) seeds, kNN accuracy on the standard test
split; the mean and standard deviation per library, the difference and the
criterion |difference| <= max(2 points, 2 sigma) (sigma: the larger of the two
libraries' standard deviations), with raw pixels and the untrained backbone
(three seeds) beside them, and whether each learned model beats the untrained
backbone. ``--methods`` may add ``moco_v2`` and ``simsiam`` (featurekit rows
only; the GPU variant runs all four). Without lightly installed, the quality
part prints the featurekit rows alone.

Install the peer first (``pip install ".[bench]"`` brings lightly), then run
from anywhere::

    python benchmarks/bench_lightly.py throughput [--backbone small_cnn] [--data cifar10]
        [--batch-size 64] [--steps 100] [--warmup 10] [--repeats 3]
    python benchmarks/bench_lightly.py quality [--data mnist cifar10] [--methods simclr byol]
        [--n 2000] [--epochs 10] [--batch-size 128] [--seeds 0 1 2]

``--device cuda --precision bf16`` runs either part on a GPU (both sides
under the same autocast). ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import featurekit
from featurekit.datasets import standard_split
from featurekit.evaluate import knn_accuracy
from featurekit.registry import get_registry

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
PEER_METHODS = ("simclr", "byol")  # the methods written with lightly here
METHODS = ("simclr", "moco_v2", "simsiam", "byol")
TEMPERATURE = 0.5
BASE_MOMENTUM = 0.99


def lightly_version() -> str | None:
    try:
        import lightly
    except ImportError:
        return None
    return lightly.__version__


def require_lightly() -> None:
    if lightly_version() is None:
        raise SystemExit("lightly is not installed: pip install '.[bench]' (or pip install lightly)")


# -- data --------------------------------------------------------------------
def load_split(data_dir: Path, data: str):
    """The standard split of ../shared/data/README.md: uint8 images and int64 labels."""
    with np.load(data_dir / f"{data}_test.npz", allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    train, test = standard_split(y)
    return x[train], y[train], x[test], y[test]


def subset(y: np.ndarray, n: int) -> np.ndarray:
    """A fixed, class-stratified subset of ``n`` indices (the same for every seed)."""
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=0)
    return np.sort(keep)


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] (featurekit's scale="auto")."""
    t = torch.from_numpy(x).float().div_(255)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.mean(dim=(0, 2, 3)).tolist(), t.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def to_tensor(x: np.ndarray, mean, std) -> torch.Tensor:
    t = torch.from_numpy(x).float().div_(255)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return (t - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


class PILImages(torch.utils.data.Dataset):
    """uint8 arrays as PIL images through a lightly transform (lightly's data path)."""

    def __init__(self, x: np.ndarray, transform):
        self.x, self.transform = x, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.x[i]))


# -- the shared module -------------------------------------------------------
def make_backbone(name: str, x: np.ndarray) -> nn.Module:
    """The backbone featurekit builds for these images (small-image stem, no weights)."""
    channels = 1 if x.ndim == 3 else x.shape[-1]
    return get_registry().backbone(name).factory(
        in_channels=channels, input_size=x.shape[1], small_stem=True, weights=None)


# -- featurekit ----------------------------------------------------------------
def featurekit_estimator(method: str, args, seed: int, epochs: int):
    return featurekit.create(method, backbone=args.backbone, max_epochs=epochs,
                             batch_size=args.batch_size, random_state=seed, verbose=0,
                             device=args.device, precision=args.precision,
                             num_workers=args.num_workers)


# -- lightly -------------------------------------------------------------------
def lightly_transform(method: str, size: int, mean, std):
    normalize = {"mean": list(mean), "std": list(std)}
    if method == "simclr":
        from lightly.transforms import SimCLRTransform

        # Both follow SimCLR's jitter 0.8 s (hue 0.2 s) with s = 0.5, the CIFAR-10 value.
        return SimCLRTransform(input_size=size, cj_strength=0.5, min_scale=0.2,
                               gaussian_blur=0.0, normalize=normalize)
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

    return BYOLTransform(
        BYOLView1Transform(input_size=size, min_scale=0.2, gaussian_blur=0.0,
                           solarization_prob=0.0, normalize=normalize),
        BYOLView2Transform(input_size=size, min_scale=0.2, gaussian_blur=0.0,
                           solarization_prob=0.2, normalize=normalize))


class LightlySimCLR(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        dim = backbone.out_features
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(dim, dim, 128)
        self.criterion = NTXentLoss(temperature=TEMPERATURE)

    def training_loss(self, views, progress: float) -> torch.Tensor:
        z0, z1 = (self.projection_head(self.backbone(v)) for v in views)
        return self.criterion(z0, z1)

    def after_step(self, progress: float) -> None:
        pass


class LightlyBYOL(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        import copy

        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        dim = backbone.out_features
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(dim, 2 * dim, 256)
        self.prediction_head = BYOLPredictionHead(256, 2 * dim, 256)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    def training_loss(self, views, progress: float) -> torch.Tensor:
        x0, x1 = views
        p0 = self.prediction_head(self.projection_head(self.backbone(x0)))
        p1 = self.prediction_head(self.projection_head(self.backbone(x1)))
        with torch.no_grad():
            z0 = self.projection_head_momentum(self.backbone_momentum(x0))
            z1 = self.projection_head_momentum(self.backbone_momentum(x1))
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def after_step(self, progress: float) -> None:
        # lightly's example updates before the forward pass; featurekit after the
        # optimizer step (the paper's order). Same rate at the same progress.
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(int(progress * 10**6), 10**6, BASE_MOMENTUM, 1.0)
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)


class LightlyRun:
    """A lightly training loop over ``x`` as the lightly examples write it."""

    def __init__(self, method: str, x: np.ndarray, args, seed: int, epochs: int,
                 optimizer_params: dict, mean, std):
        from lightly.utils.scheduler import CosineWarmupScheduler

        torch.manual_seed(seed)
        self.device = torch.device(args.device if args.device != "auto" else
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        cls = LightlySimCLR if method == "simclr" else LightlyBYOL
        self.model = cls(make_backbone(args.backbone, x)).to(self.device)
        dataset = PILImages(x, lightly_transform(method, x.shape[1], mean, std))
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
            num_workers=args.num_workers, generator=torch.Generator().manual_seed(seed))
        self.epochs = epochs
        self.total = max(1, len(self.loader) * epochs)
        params = next(iter(optimizer_params.values()))
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=params["lr"], weight_decay=params["weight_decay"])
        self.scheduler = CosineWarmupScheduler(self.optimizer, warmup_epochs=int(0.1 * self.total),
                                               max_epochs=self.total, end_value=0.0)
        self.autocast = args.precision == "bf16"

    def run(self, max_steps: int | None = None) -> None:
        step = 0
        self.model.train()
        for _ in range(self.epochs):
            for views in self.loader:
                views = [v.to(self.device, non_blocking=True) for v in views]
                with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                    enabled=self.autocast):
                    loss = self.model.training_loss(views, step / self.total)
                loss.backward()
                self.optimizer.step()
                self.optimizer.zero_grad()
                self.scheduler.step()
                step += 1
                self.model.after_step(step / self.total)
                if max_steps is not None and step >= max_steps:
                    return

    @torch.no_grad()
    def features(self, x: np.ndarray, mean, std, batch_size: int = 512) -> np.ndarray:
        backbone = self.model.backbone.eval()
        images = to_tensor(x, mean, std)
        return np.concatenate([backbone(images[i:i + batch_size].to(self.device)).float().cpu()
                               .numpy() for i in range(0, len(images), batch_size)])


# -- throughput ----------------------------------------------------------------
def sync(device: str) -> None:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        torch.cuda.synchronize()


def throughput(args) -> dict:
    require_lightly()
    methods = [m for m in args.methods if m in PEER_METHODS]
    x_train, *_ = load_split(args.data_dir, args.data)
    need = args.batch_size * args.steps
    x = np.ascontiguousarray(np.resize(x_train, (need, *x_train.shape[1:])))  # tiled if short
    warm = x[:args.batch_size * args.warmup]
    mean, std = channel_stats(x_train)
    results = {}
    for method in methods:
        fk_times, lt_times = [], []
        for _ in range(args.repeats):
            featurekit_estimator(method, args, 0, 1).fit(warm)  # warm-up steps
            est = featurekit_estimator(method, args, 0, 1)
            sync(args.device)
            t0 = time.perf_counter()
            est.fit(x)
            sync(args.device)
            fk_times.append(time.perf_counter() - t0)

            run = LightlyRun(method, x, args, 0, 1, est.optimizer_params_, mean, std)
            run.run(args.warmup)
            run = LightlyRun(method, x, args, 0, 1, est.optimizer_params_, mean, std)
            sync(args.device)
            t0 = time.perf_counter()
            run.run(args.steps)
            sync(args.device)
            lt_times.append(time.perf_counter() - t0)
        ratios = [lt / fk for fk, lt in zip(fk_times, lt_times)]
        images = args.batch_size * args.steps
        results[method] = {
            "featurekit_images_per_s": images / statistics.median(fk_times),
            "lightly_images_per_s": images / statistics.median(lt_times),
            "ratios": ratios, "median_ratio": statistics.median(ratios)}
        r = results[method]
        print(f"{method:7s} featurekit {r['featurekit_images_per_s']:8.1f} img/s   "
              f"lightly {r['lightly_images_per_s']:8.1f} img/s   ratio (median of "
              f"{args.repeats}) {r['median_ratio']:.2f}x   rounds "
              + " ".join(f"{q:.2f}" for q in ratios), flush=True)
    return results


# -- quality -------------------------------------------------------------------
def untrained_knn(args, x_fit, y_fit, x_test, y_test, seed: int) -> float:
    """kNN accuracy of the randomly initialized backbone (featurekit's "pretrained", no weights)."""
    est = featurekit.create("pretrained", backbone=args.backbone, random_state=seed, verbose=0,
                            device=args.device).fit(x_fit)
    return knn_accuracy(est.transform(x_fit), y_fit, est.transform(x_test), y_test)


def quality(args) -> dict:
    peer = lightly_version() is not None
    if not peer:
        print("lightly is not installed: featurekit rows only", flush=True)
    results = {}
    for data in args.data_list:
        x_train, y_train, x_test, y_test = load_split(args.data_dir, data)
        keep = subset(y_train, args.n)
        x_fit, y_fit = x_train[keep], y_train[keep]
        mean, std = channel_stats(x_fit)
        flat = lambda a: a.reshape(len(a), -1).astype(np.float32)  # noqa: E731
        rows = {"raw pixels": [knn_accuracy(flat(x_fit), y_fit, flat(x_test), y_test)]}
        rows["untrained " + args.backbone] = [
            untrained_knn(args, x_fit, y_fit, x_test, y_test, seed) for seed in args.seeds]
        for method in args.methods:
            with_peer = peer and method in PEER_METHODS
            for lib in ("featurekit", "lightly")[:1 + with_peer]:
                rows[f"{method} {lib}"] = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                est = featurekit_estimator(method, args, seed, args.epochs).fit(x_fit)
                fk = knn_accuracy(est.transform(x_fit), y_fit, est.transform(x_test), y_test)
                rows[f"{method} featurekit"].append(fk)
                line = f"{data} {method} seed {seed}: featurekit {fk:.3f} " \
                       f"({time.perf_counter() - t0:.0f} s)"
                if with_peer:
                    t0 = time.perf_counter()
                    run = LightlyRun(method, x_fit, args, seed, args.epochs,
                                     est.optimizer_params_, mean, std)
                    run.run()
                    lt = knn_accuracy(run.features(x_fit, mean, std), y_fit,
                                      run.features(x_test, mean, std), y_test)
                    rows[f"{method} lightly"].append(lt)
                    line += f"  lightly {lt:.3f} ({time.perf_counter() - t0:.0f} s)"
                print(line, flush=True)
        results[data] = rows
        print_quality(data, rows, args)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def print_quality(data: str, rows: dict, args) -> None:
    print(f"\n{data}: {args.n} training images, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.backbone}, seeds {args.seeds}; weighted 20-NN accuracy on the 2,000 test images")
    print(f"| {'features':24s} | kNN accuracy (mean ± std) |")
    print(f"| {'-' * 24} | {'-' * 25} |")
    for name, values in rows.items():
        m, s = _mean_std(values)
        print(f"| {name:24s} | {100 * m:6.2f} ± {100 * s:4.2f}            |")
    untrained = _mean_std(rows["untrained " + args.backbone])[0]
    for name, values in rows.items():
        if name.endswith(("featurekit", "lightly")):
            m = _mean_std(values)[0]
            print(f"{name}: {'beats' if m > untrained else 'does NOT beat'} the untrained "
                  f"backbone ({100 * (m - untrained):+.2f} points)")
    for method in args.methods:
        if f"{method} lightly" not in rows:
            continue
        fk, lt = rows[f"{method} featurekit"], rows[f"{method} lightly"]
        (mf, sf), (ml, sl) = _mean_std(fk), _mean_std(lt)
        bound = max(0.02, 2 * max(sf, sl))
        verdict = "PASS" if abs(mf - ml) <= bound else "FAIL"
        print(f"{method}: featurekit - lightly = {100 * (mf - ml):+.2f} points; "
              f"bound max(2, 2 sigma) = {100 * bound:.2f} -> {verdict}")
    print(flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("throughput", "quality"))
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--data", nargs="+", default=None, choices=("mnist", "cifar10"),
                        help="throughput: the first one (default cifar10); quality: each "
                             "(default mnist cifar10)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--methods", nargs="+", default=list(PEER_METHODS), choices=METHODS,
                        help="moco_v2 and simsiam have featurekit rows only (quality)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default 64 for throughput, 128 for quality")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help='"auto", "fp32" or "bf16"')
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader workers of both sides (featurekit uses them for "
                             "file input only)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.data_list = args.data or (["cifar10"] if args.part == "throughput"
                                   else ["mnist", "cifar10"])
    args.data = args.data_list[0]
    args.batch_size = args.batch_size or (64 if args.part == "throughput" else 128)
    print(f"torch {torch.__version__}, featurekit {featurekit.__version__}, lightly "
          f"{lightly_version()}, {torch.get_num_threads()} threads, "
          f"device {args.device}, precision {args.precision}", file=sys.stderr)
    started = time.perf_counter()
    results = throughput(args) if args.part == "throughput" else quality(args)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"config": config, "results": results}, indent=1))


if __name__ == "__main__":
    main()
