"""Reconstructive family: reconstruction errors on MNIST, and the features' accuracy.

CPU budget: about 40 minutes with OMP_NUM_THREADS=1 on a shared 2-core machine
(the defaults below); ``--quick`` checks the script in about a minute.

On the standard split of ../shared/data/mnist_test.npz (8,000 training and
2,000 test images, ../shared/data/README.md), every model learns from the
training images without labels, then:

- **AutoEncoder** (``n_components=32``) and **VAE** (32 latent variables)
  reconstruct the test images; their mean squared error (pixels in [0, 1]) is
  printed beside sklearn's ``PCA(32)`` and the ratio to it (the denoising
  autoencoder's too);
- **MAE** hides 75 % of each test image's 4x4 patches (``random_state=0``) and
  predicts them; its MSE on the hidden pixels is printed beside the baseline
  that fills every hidden patch with the mean of the image's visible pixels;
- reconstruction grids are drawn with ``featurekit plot`` into ``--out``
  (models and the test split are saved there too, so the commands can be
  rerun), with VAE samples and a VAE latent traversal;
- ``featurekit.evaluate`` scores kNN and linear-probe accuracy of each
  method's features on the MNIST test images, and again on
  ../shared/data/cifar10_test.npz (same split, fewer epochs), beside raw
  pixels, PCA(32) and the untrained encoders.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_reconstructive.py [--out benchmarks/out]
        [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import featurekit
from featurekit.cli import main as featurekit_cli
from featurekit.datasets import standard_split
from featurekit.evaluate import evaluate, format_table

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
N_COMPONENTS = 32
SMALL_CNN = {"backbone_kwargs": {"width": 16}}
#: A 4-block, 128-d ViT (vit_tiny has 12 blocks of 192): about 1 minute per MNIST epoch here.
SMALL_VIT = {"backbone_kwargs": {"num_layers": 4, "num_heads": 4, "hidden_dim": 128,
                                 "mlp_dim": 256}}
#: method -> (its parameters, epochs on MNIST, epochs on CIFAR-10)
MODELS = {
    "autoencoder": ({**SMALL_CNN, "n_components": N_COMPONENTS}, 10, 3),
    "denoising_autoencoder": ({**SMALL_CNN, "n_components": N_COMPONENTS}, 10, 3),
    "vae": ({**SMALL_CNN, "n_components": N_COMPONENTS}, 10, 3),
    "mae": (SMALL_VIT, 8, 3),
}


def pixels(x: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 rows in [0, 1]."""
    return x.reshape(len(x), -1).astype(np.float32) / 255


def mse(rebuilt: np.ndarray, images: np.ndarray) -> float:
    """Mean squared error of float reconstructions in [0, 1] against uint8 images."""
    return float(np.mean((rebuilt.reshape(len(images), -1) - pixels(images)) ** 2))


def fit_models(x_train: np.ndarray, dataset: str, args) -> dict:
    """Every method of MODELS fitted on ``x_train``, and the untrained encoders of the
    autoencoder and the MAE (``max_epochs=0``)."""
    common = dict(batch_size=args.batch_size, device=args.device, random_state=args.seed,
                  verbose=0)
    fitted = {}
    for name, (params, mnist_epochs, cifar_epochs) in MODELS.items():
        n_epochs = 1 if args.quick else mnist_epochs if dataset == "MNIST" else cifar_epochs
        t0 = time.perf_counter()
        fitted[name] = featurekit.create(name, max_epochs=n_epochs, **params, **common
                                         ).fit(x_train)
        losses = fitted[name].history_.get("loss", [])
        print(f"{dataset} {name}: {n_epochs} epochs, {time.perf_counter() - t0:.0f} s, "
              f"loss {losses[0]:.4g} -> {losses[-1]:.4g}", flush=True)
    for name in ("autoencoder", "mae"):
        fitted[f"{name}, untrained"] = featurekit.create(name, max_epochs=0, **MODELS[name][0],
                                                         **common).fit(x_train)
    return fitted


def reconstruction_errors(models: dict, pca: PCA, x_test: np.ndarray) -> None:
    """Test MSE of AE, DAE and VAE against PCA, and of MAE against mean filling."""
    floats = x_test.astype(np.float32) / 255  # reconstruct answers in float: no rounding
    pca_mse = mse(pca.inverse_transform(pca.transform(pixels(x_test))), x_test)
    print(f"\nMNIST test reconstruction MSE (pixels in [0, 1]), {N_COMPONENTS} components")
    print(f"  PCA({N_COMPONENTS}): {pca_mse:.5f}")
    for name in ("autoencoder", "denoising_autoencoder", "vae"):
        error = mse(models[name].reconstruct(floats), x_test)
        print(f"  {name}: {error:.5f}   ratio to PCA {error / pca_mse:.3f}")
    rebuilt, mask = models["mae"].reconstruct(floats, random_state=0, return_mask=True)
    hidden = mask.astype(bool)
    mae_mse = float(np.mean((rebuilt - floats)[hidden] ** 2))
    visible_mean = np.where(hidden, 0, floats).sum(axis=(1, 2)) / (~hidden).sum(axis=(1, 2))
    fill_mse = float(np.mean((visible_mean[:, None, None] - floats)[hidden] ** 2))
    print(f"\nMNIST test MSE on the hidden pixels ({hidden.mean():.1%} hidden, 4x4 patches)")
    print(f"  mean of the visible pixels: {fill_mse:.5f}")
    print(f"  mae: {mae_mse:.5f}   ratio to the mean fill {mae_mse / fill_mse:.3f}")


def pictures(models: dict, x_test: np.ndarray, y_test: np.ndarray, out: Path) -> None:
    """Save the models and the test split, and draw grids with `featurekit plot`."""
    data = out / "mnist_test_split.npz"
    np.savez(data, x=x_test, y=y_test)
    for name in ("autoencoder", "denoising_autoencoder", "vae", "mae"):
        models[name].save(out / f"mnist_{name}.pt")
    commands = [["plot", "reconstructions", out / f"mnist_{name}.pt", data, "-n", "10",
                 "-o", out / f"mnist_{name}_reconstructions.png"]
                for name in ("autoencoder", "denoising_autoencoder", "vae", "mae")]
    commands += [["plot", "samples", out / "mnist_vae.pt", "-o", out / "mnist_vae_samples.png"],
                 ["plot", "traversal", out / "mnist_vae.pt", data,
                  "-o", out / "mnist_vae_traversal.png"]]
    print()
    for command in commands:
        args = [str(a) for a in command]
        print(f"$ featurekit {' '.join(args)}", flush=True)
        try:
            featurekit_cli(args)
        except SystemExit as exc:
            if exc.code:
                raise


def accuracy_table(models: dict, x_train, y_train, x_test, y_test, dataset: str) -> None:
    flat_pca = make_pipeline(FunctionTransformer(pixels), PCA(N_COMPONENTS, random_state=0))
    extractors = {"raw pixels": "raw", f"PCA({N_COMPONENTS})": flat_pca.fit(x_train), **models}
    t0 = time.perf_counter()
    rows = evaluate(extractors, x_train, y_train, x_test, y_test)
    print(f"\n{dataset}: kNN and linear-probe accuracy on the {len(x_test)} test images "
          f"(features of the {len(x_train)} training images; {time.perf_counter() - t0:.0f} s)\n")
    print(format_table(rows, ["features", "n_features", "knn", "linear_probe"]), flush=True)


def load(path: Path, quick: bool) -> tuple:
    with np.load(path, allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    train, test = standard_split(y)
    if quick:
        train, test = train[:600], test[:200]
    return x[train], y[train], x[test], y[test]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where the PNG grids, models and test split go")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="600 training images, 1 epoch: checks the script runs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    x_train, y_train, x_test, y_test = load(args.data_dir / "mnist_test.npz", args.quick)
    models = fit_models(x_train, "MNIST", args)
    pca = PCA(N_COMPONENTS, random_state=0).fit(pixels(x_train))
    reconstruction_errors(models, pca, x_test)
    pictures(models, x_test, y_test, args.out)
    accuracy_table(models, x_train, y_train, x_test, y_test, "MNIST")

    x_train, y_train, x_test, y_test = load(args.data_dir / "cifar10_test.npz", args.quick)
    models = fit_models(x_train, "CIFAR-10", args)
    accuracy_table(models, x_train, y_train, x_test, y_test, "CIFAR-10")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
