"""Adversarial family: CycleGAN between MNIST and USPS, and BiGAN features on MNIST.

CPU budget: the closing line of a run prints its minutes, wall and CPU, with
OMP_NUM_THREADS=1 (the defaults below; on 2026-12-07 about 10 minutes; on
2026-11-30, with 7 and 9 epochs, the box's load made a run 25.8 CPU and 48.6
wall minutes); ``--quick`` checks the script in about a minute and a half.

Data (../shared/data/README.md): domain A is MNIST (mnist_test.npz, 28 px,
the standard 8,000 / 2,000 split), domain B is USPS (usps.npz, 16 px, its
``split`` column: 7,291 training and 2,007 test images). CycleGAN learns
from the training images of both, unpaired, at a working size of 16 px
(``image_size=16``), each image deskewed (``deskew=True``: sheared upright
by its ink's moments, as USPS's digits already are) and each domain cropped
to its content square (``framing="content"``; neither in the paper: MNIST's
20 px digit box, USPS's whole frame, found from the images without labels);
``translate`` gives MNIST-like images back at 28 px, pasted into MNIST's box.

Printed, in one table (test images only):

- **label preservation**: an RBF ``SVC`` trained once on the real USPS
  training pixels labels G(MNIST test); beside it, the same SVC on MNIST test
  images merely resized to 16 px (identity baseline), on MNIST's 20 px
  digit box cropped, then resized (crop-box baseline), and on the same
  after deskewing (the input G sees). The other way, an SVC
  trained on the MNIST training pixels labels F(USPS test) at 28 px, beside
  USPS resized to 28 px and USPS resized to 20 px and padded into MNIST's
  frame (the crop box's inverse). Targets: at least 0.85 both ways, and 10
  points above the crop-box row.
- **realism**: a logistic regression trained on real MNIST vs real USPS
  training pixels at 16 px: the fraction of G(MNIST) it calls USPS and of
  F(USPS) it calls MNIST (target 80 %), beside the crop-box baselines; and
  the same with a small CNN domain classifier, which sees more than MNIST's
  empty border.
- **cycle error**: mean L1 of F(G(a)) - a (pixels in [0, 1]) on the held-out
  training images after every epoch (``history_``), and on the test images.
- **BiGAN**: weighted kNN accuracy (featurekit.evaluate.knn_accuracy, k=20)
  on MNIST test of E(x) features, beside raw pixels and the untrained encoder.

The translation grid is drawn with ``featurekit plot translations`` into
``--out`` (default benchmarks/out/), with the models; BiGAN samples too.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_adversarial.py [--out DIR] [--quick]

GPU-sized variant (the paper's generator and discriminator widths, 32 px,
many more epochs; not timed here, as these machines have no GPU)::

    python benchmarks/bench_adversarial.py --device cuda --epochs 100 --width 64 \\
        --n-blocks 6 --discriminator-width 64 --batch-size 16 --image-size 32 \\
        --bigan-epochs 200 --bigan-batch-size 128    # framing="content", deskew as on the CPU

CPU settings: CycleGAN with ``cyclegan_encoder`` (width 16, 3 residual
blocks), PatchGANs of width 32, batch 64, 9 epochs, ``framing="content"``,
``deskew=True``, the paper's ``lambda_identity=0.5`` (1.0 gave the same on
the dev split with deskewing: 0.899 / 0.859 against 0.894 / 0.859); BiGAN
with a width-16 ``small_cnn`` encoder, generator width 64, discriminator
width 32, spectral norm, batch 32, 20 epochs (dev kNN 0.682, 0.632 at 7
epochs). ``--dev`` evaluates on a split of the *training* images
instead of the test sets: the settings were chosen that way (framing and
the identity weight, deskewing, epochs; see docs/adversarial.md), never on
the test sets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC
from torch import nn
from torch.nn import functional as F

import featurekit
import featurekit.cli_plot_translations  # noqa: F401  (registers `plot translations`)
from featurekit.cli import main as featurekit_cli
from featurekit.data.inputs import resize_shorter_and_crop
from featurekit.evaluate import format_table, knn_accuracy
from featurekit_adversarial.domains import deskew

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
A, B = "mnist", "usps"


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, H, W) images resized to (n, size, size) by featurekit's image_size rule."""
    t = torch.from_numpy(np.ascontiguousarray(x))[:, None]
    return resize_shorter_and_crop(t, size)[:, 0].numpy()


def crop_box(mnist: np.ndarray, size: int) -> np.ndarray:
    """MNIST's 20 px digit box (the centre of the 28 px frame), resized to ``size``."""
    return resize(mnist[:, 4:24, 4:24], size)


def deskewed(images: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) images on black, deskewed as CycleGAN(deskew=True) does."""
    t = torch.from_numpy(np.ascontiguousarray(images))[:, None]
    return deskew(t, 255.0, [0.0])[:, 0].numpy()


def pad_box(usps: np.ndarray) -> np.ndarray:
    """USPS digits resized to 20 px and centred in a 28 px frame, as MNIST's are."""
    out = np.zeros((len(usps), 28, 28), np.uint8)
    out[:, 4:24, 4:24] = resize(usps, 20)
    return out


def rows01(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32) / 255


def load(data_dir: Path, dev: bool) -> dict:
    """Train and evaluation images of both domains (evaluation: test sets, or with
    ``dev`` a split of the training images)."""
    mnist, usps = np.load(data_dir / "mnist_test.npz"), np.load(data_dir / "usps.npz")
    xm, ym = mnist["x"], mnist["y"]
    train_m, test_m = train_test_split(np.arange(len(ym)), test_size=0.2, stratify=ym,
                                       random_state=0)
    xu, yu, split = usps["x"], usps["y"], usps["split"]
    train_u, test_u = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    if dev:
        train_m, test_m = train_test_split(train_m, test_size=0.2, stratify=ym[train_m],
                                           random_state=1)
        train_u, test_u = train_test_split(train_u, test_size=0.2, stratify=yu[train_u],
                                           random_state=1)
    return {"a_train": xm[train_m], "ya_train": ym[train_m], "a_test": xm[test_m],
            "ya_test": ym[test_m], "b_train": xu[train_u], "yb_train": yu[train_u],
            "b_test": xu[test_u], "yb_test": yu[test_u]}


class DomainCNN(nn.Module):
    """A small CNN telling 16 px MNIST (0) from USPS (1)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x):
        return self.net(x)


def train_domain_cnn(a16: np.ndarray, b16: np.ndarray, seed: int, epochs: int = 3):
    torch.manual_seed(seed)
    x = torch.from_numpy(np.concatenate([a16, b16])).float()[:, None] / 255
    y = torch.cat([torch.zeros(len(a16)), torch.ones(len(b16))]).long()
    model = DomainCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()

    def predict(images16: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(images16).float()[:, None] / 255
            return model(t).argmax(1).numpy()

    return predict


def fit_cyclegan(d: dict, args) -> featurekit.FeatureExtractor:
    X = list(d["a_train"]) + list(d["b_train"])
    domains = [A] * len(d["a_train"]) + [B] * len(d["b_train"])
    gan = featurekit.create(
        "cyclegan", backbone_kwargs={"width": args.width, "n_blocks": args.n_blocks},
        discriminator_width=args.discriminator_width, image_size=args.image_size,
        framing=args.framing, deskew=args.deskew, lambda_identity=args.lambda_identity,
        max_epochs=args.epochs, batch_size=args.batch_size, device=args.device,
        random_state=args.seed, verbose=0)
    return gan.fit(X, domains=domains)


def fit_bigan(x: np.ndarray, epochs: int, args) -> featurekit.FeatureExtractor:
    gan = featurekit.create("bigan", backbone_kwargs={"width": 16}, generator_width=64,
                            discriminator_width=32, spectral_norm=True, max_epochs=epochs,
                            batch_size=args.bigan_batch_size, device=args.device,
                            random_state=args.seed, verbose=0)
    return gan.fit(x)


def write_grid_data(folder: Path, d: dict, n: int = 8) -> None:
    """``n`` test images of each domain as PNGs in ``folder/mnist`` and ``folder/usps``."""
    for name, images in ((A, d["a_test"]), (B, d["b_test"])):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images[:n]):
            Image.fromarray(image).save(folder / name / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=9, help="CycleGAN epochs")
    parser.add_argument("--bigan-epochs", type=int, default=20)
    parser.add_argument("--bigan-batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16,
                        help="generator width k (the paper's 64)")
    parser.add_argument("--n-blocks", type=int, default=3,
                        help="residual blocks (the paper's 6 below 256 px)")
    parser.add_argument("--discriminator-width", type=int, default=32,
                        help="PatchGAN width (the paper's 64)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--framing", choices=["full", "content"], default="content",
                        help="CycleGAN's framing= (the paper: full)")
    parser.add_argument("--lambda-identity", type=float, default=0.5,
                        help="CycleGAN's identity loss weight, relative to lambda_cycle")
    parser.add_argument("--deskew", action=argparse.BooleanOptionalAction, default=True,
                        help="CycleGAN's deskew= (moment deskewing before framing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 epoch on 1,000 images each")
    parser.add_argument("--dev", action="store_true",
                        help="evaluate on a split of the training images, not the test sets")
    args = parser.parse_args()
    started, cpu_started = time.perf_counter(), time.process_time()
    args.out.mkdir(parents=True, exist_ok=True)
    d = load(args.data_dir, args.dev)
    if args.quick:
        args.epochs = args.bigan_epochs = 1
        d = {k: v[:1000] for k, v in d.items()}
    print(f"{'dev split' if args.dev else 'test sets'}: MNIST {len(d['a_train'])} train / "
          f"{len(d['a_test'])} eval, USPS {len(d['b_train'])} train / {len(d['b_test'])} eval",
          flush=True)

    svc_b = SVC().fit(rows01(d["b_train"]), d["yb_train"])
    svc_a = SVC().fit(rows01(d["a_train"]), d["ya_train"])
    a16_train, b16_train = resize(d["a_train"], 16), resize(d["b_train"], 16)
    domain_lr = LogisticRegression(max_iter=1000).fit(
        rows01(np.concatenate([a16_train, b16_train])),
        np.r_[np.zeros(len(a16_train)), np.ones(len(b16_train))])
    domain_cnn = train_domain_cnn(a16_train, b16_train, args.seed)
    print(f"classifiers trained ({time.perf_counter() - started:.0f} s)", flush=True)

    t0, c0 = time.perf_counter(), time.process_time()
    gan = fit_cyclegan(d, args)
    cycle_minutes = (time.perf_counter() - t0) / 60
    cycle_cpu = (time.process_time() - c0) / 60
    gan.save(args.out / "cyclegan.pt")
    print(f"CycleGAN fitted ({cycle_minutes:.1f} min wall, {cycle_cpu:.1f} min CPU)", flush=True)
    g_a = gan.translate(d["a_test"], to=B)          # (n, 16, 16) uint8
    f_b = gan.translate(d["b_test"], to=A)          # (n, 28, 28) uint8
    rec_a = gan.translate(g_a, to=A)
    rec_b = gan.translate(f_b, to=B)

    def acc(model, images, labels):
        return float(np.mean(model.predict(rows01(images)) == labels))

    def rate(images16, label):
        lr = float(np.mean(domain_lr.predict(rows01(images16)) == label))
        cnn = float(np.mean(domain_cnn(images16) == label))
        return lr, cnn

    ya, yb = d["ya_test"], d["yb_test"]
    box_a, pad_b = crop_box(d["a_test"], 16), pad_box(d["b_test"])
    rows = [
        ("label preservation", "SVC(USPS) on USPS test itself", acc(svc_b, d["b_test"], yb)),
        ("label preservation", "SVC(USPS) on G(MNIST)", acc(svc_b, g_a, ya)),
        ("label preservation", "SVC(USPS) on MNIST resized to 16", acc(svc_b, resize(d["a_test"], 16), ya)),
        ("label preservation", "SVC(USPS) on MNIST crop box -> 16", acc(svc_b, box_a, ya)),
        ("label preservation", "SVC(USPS) on MNIST deskewed, crop box -> 16",
         acc(svc_b, crop_box(deskewed(d["a_test"]), 16), ya)),
        ("label preservation", "SVC(MNIST) on MNIST test itself", acc(svc_a, d["a_test"], ya)),
        ("label preservation", "SVC(MNIST) on F(USPS)", acc(svc_a, f_b, yb)),
        ("label preservation", "SVC(MNIST) on USPS resized to 28", acc(svc_a, resize(d["b_test"], 28), yb)),
        ("label preservation", "SVC(MNIST) on USPS -> 20 px in 28 frame", acc(svc_a, pad_b, yb)),
    ]
    for what, images, label in (("G(MNIST) called USPS", g_a, 1),
                                ("MNIST crop box called USPS", box_a, 1),
                                ("F(USPS) called MNIST", resize(f_b, 16), 0),
                                ("USPS in 28 frame called MNIST", resize(pad_b, 16), 0)):
        lr, cnn = rate(images if images.shape[-1] == 16 else resize(images, 16), label)
        rows += [("realism (logistic regression)", what, lr), ("realism (small CNN)", what, cnn)]
    for epoch, (ea, eb) in enumerate(zip(gan.history_.get("cycle_error_a", []),
                                         gan.history_.get("cycle_error_b", [])), 1):
        rows.append(("cycle error (held-out train)", f"epoch {epoch}: |F(G(a))-a|, |G(F(b))-b|",
                     f"{ea:.4f}, {eb:.4f}"))
    rows.append(("cycle error (test)", "|F(G(a))-a|, |G(F(b))-b|",
                 f"{np.abs(rec_a / 255 - d['a_test'] / 255).mean():.4f}, "
                 f"{np.abs(rec_b / 255 - d['b_test'] / 255).mean():.4f}"))

    grid_data = args.out / "translation_data"
    write_grid_data(grid_data, d)
    grid = args.out / "cyclegan_translations.png"
    featurekit_cli_run(["plot", "translations", str(args.out / "cyclegan.pt"), str(grid_data),
                        "-o", str(grid), "-n", "8"])

    t0, c0 = time.perf_counter(), time.process_time()
    bigan = fit_bigan(d["a_train"], args.bigan_epochs, args)
    bigan_minutes = (time.perf_counter() - t0) / 60
    bigan_cpu = (time.process_time() - c0) / 60
    untrained = fit_bigan(d["a_train"], 0, args)
    bigan.save(args.out / "bigan.pt")
    featurekit_cli_run(["plot", "samples", str(args.out / "bigan.pt"), "-o",
                        str(args.out / "bigan_samples.png"), "-n", "32"])
    for what, tr, te in (
            ("BiGAN E(x)", bigan.transform(d["a_train"]), bigan.transform(d["a_test"])),
            ("raw pixels", rows01(d["a_train"]), rows01(d["a_test"])),
            ("untrained encoder", untrained.transform(d["a_train"]),
             untrained.transform(d["a_test"]))):
        rows.append(("BiGAN kNN accuracy (MNIST)", what, knn_accuracy(tr, d["ya_train"], te, ya)))

    minutes = (time.perf_counter() - started) / 60
    cpu_minutes = (time.process_time() - cpu_started) / 60
    print(f"\nCycleGAN {args.epochs} epochs ({cycle_minutes:.1f} min wall, {cycle_cpu:.1f} CPU), "
          f"BiGAN {args.bigan_epochs} epochs ({bigan_minutes:.1f} min wall, {bigan_cpu:.1f} CPU); "
          f"total {minutes:.1f} min wall, {cpu_minutes:.1f} "
          f"min CPU (this process) on {args.device}; "
          f"{'DEV SPLIT' if args.dev else 'test sets'}\n")
    print(format_table([{"measure": m, "images": w,
                         "value": v if isinstance(v, str) else f"{v:.3f}"} for m, w, v in rows]))
    print(f"\ntranslation grid: {grid}\nBiGAN samples: {args.out / 'bigan_samples.png'}")


def featurekit_cli_run(argv: list[str]) -> None:
    try:
        featurekit_cli(argv)
    except SystemExit as exc:
        if exc.code:
            raise


if __name__ == "__main__":
    main()
