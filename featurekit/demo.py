"""``featurekit demo``: the main job end to end on embedded data.

Fits SimCLR on MNIST images (shipped with the package) on a small CNN,
extracts features into an HDF5 store, indexes them with FAISS, searches the
test images' neighbours, and reports kNN and linear-probe accuracy of raw
pixels, the untrained backbone and the learned features side by side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import featurekit
from featurekit.datasets import load_mnist, standard_split
from featurekit.evaluate import evaluate, format_table

#: (training images, epochs) of the full demo and of ``--quick``.
FULL = (8000, 6)
QUICK = (600, 1)


def search(train_features: np.ndarray, test_features: np.ndarray, y_train: np.ndarray,
           y_test: np.ndarray, k: int = 10) -> dict:
    """Cosine k-NN search with a FAISS flat index: precision@k and queries per second."""
    import faiss

    def unit(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12))

    index = faiss.IndexFlatIP(train_features.shape[1])
    index.add(unit(train_features))
    started = time.perf_counter()
    _, ids = index.search(unit(test_features), k)
    seconds = time.perf_counter() - started
    precision = float((y_train[ids] == y_test[:, None]).mean())
    return {"precision_at_k": precision, "k": k, "queries_per_s": len(test_features) / seconds}


def plot_history(history: dict, path: Path) -> Path | None:
    """Save the loss curve as a PNG when matplotlib is installed (the ``plots`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NT-Xent loss")
    ax.set_title("SimCLR on MNIST (small_cnn)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(quick: bool = False, output_dir: str | Path = "featurekit-demo",
         echo=print) -> dict:
    """Run the demo; return its figures (also written to ``output_dir/results.json``)."""
    from featurekit.store import write_store

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_train, epochs = QUICK if quick else FULL
    X, y = load_mnist()
    train, test = standard_split(y)
    train = train[:n_train]
    test = test[: max(200, n_train // 4)]
    common = dict(backbone="small_cnn", random_state=0, batch_size=256)
    echo(f"featurekit {featurekit.__version__} demo: SimCLR on {len(train)} MNIST digits, "
         f"{epochs} epoch(s), small_cnn, CPU/GPU auto")

    started = time.perf_counter()
    simclr = featurekit.create("simclr", max_epochs=epochs, **common).fit(X[train])
    fit_seconds = time.perf_counter() - started
    echo(f"fitted in {fit_seconds:.0f} s; loss per epoch: "
         + ", ".join(f"{v:.3f}" for v in simclr.history_["loss"]))
    simclr.save(out / "simclr.pt")

    features = simclr.transform(X[train])
    store = write_store(out / "features.h5", features, ids=train, labels=y[train],
                        metadata={"method": "simclr", "params": simclr.get_params(deep=False),
                                  "featurekit": featurekit.__version__})
    found = search(features, simclr.transform(X[test]), y[train], y[test])
    echo(f"extracted {features.shape[0]} x {features.shape[1]} features to {store}; FAISS "
         f"search: precision@{found['k']} {found['precision_at_k']:.1%} at "
         f"{found['queries_per_s']:,.0f} queries/s")

    untrained = featurekit.create("pretrained", **common).fit(X[train])
    rows = evaluate({"raw pixels": "raw", "untrained small_cnn": untrained,
                     "SimCLR small_cnn": simclr}, X[train], y[train], X[test], y[test])
    echo(format_table(rows))
    plot = plot_history(simclr.history_, out / "loss.png")
    if plot is not None:
        echo(f"loss curve: {plot}")
    results = {"n_train": len(train), "n_test": len(test), "epochs": epochs,
               "fit_seconds": fit_seconds, "search": found, "table": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
