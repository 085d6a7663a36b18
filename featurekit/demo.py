"""``featurekit demo``: the main job end to end on embedded data.

Fits SimCLR on MNIST images (shipped with the package) on a small CNN,
extracts features into an HDF5 store, indexes them with FAISS
(:class:`~featurekit.index.FeatureIndex`), searches the test images'
neighbours and draws some of them, and reports kNN and linear-probe accuracy
of raw pixels, the untrained backbone and the learned features side by side.
The index is saved beside the store, so ``featurekit search`` can query it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import featurekit
from featurekit import plots
from featurekit.datasets import load_mnist, standard_split
from featurekit.evaluate import evaluate, format_table
from featurekit.index import FeatureIndex

#: (training images, epochs) of the full demo and of ``--quick``.
FULL = (8000, 6)
QUICK = (600, 1)
#: Test digits in the neighbour grid, and neighbours shown beside each.
N_GRID = 8


def search(index: FeatureIndex, queries: np.ndarray, y: np.ndarray, query_labels: np.ndarray,
           k: int = 10) -> tuple[dict, np.ndarray]:
    """Search ``queries`` in ``index``, whose ids index ``y``.

    Returns precision@k (the share of neighbours with the query's label),
    queries per second, and the neighbours' ids.
    """
    started = time.perf_counter()
    _, ids = index.search(queries, k)
    seconds = time.perf_counter() - started
    precision = float((y[ids] == query_labels[:, None]).mean())
    return {"precision_at_k": precision, "k": k,
            "queries_per_s": len(queries) / seconds}, ids


def plot_history(history: dict, path: Path) -> Path | None:
    """Save the loss curve as a PNG when matplotlib is installed (the ``plots`` extra)."""
    try:
        fig = plots.figure(figsize=(5, 3.2), dpi=120)
    except ImportError:
        return None
    ax = fig.subplots()
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NT-Xent loss")
    ax.set_title("SimCLR on MNIST (small_cnn)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return plots.save_figure(fig, path)


def plot_neighbours(X: np.ndarray, y: np.ndarray, queries: np.ndarray, neighbours: np.ndarray,
                    path: Path) -> Path | None:
    """Draw each query image beside its neighbours (rows of ``X``), titled by their digit."""
    try:
        plots.require_matplotlib()
    except ImportError:
        return None
    rows = [[X[q], *X[found]] for q, found in zip(queries, neighbours)]
    titles = [[f"query: {y[q]}", *(str(y[j]) for j in found)]
              for q, found in zip(queries, neighbours)]
    return plots.image_grid(rows, path, titles=titles)


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
    metadata = {"method": "simclr", "params": simclr.get_params(deep=False),
                "featurekit": featurekit.__version__,
                "model": str((out / "simclr.pt").resolve())}
    store = write_store(out / "features.h5", features, ids=train, labels=y[train],
                        metadata=metadata)
    index = FeatureIndex(metric="cosine").fit(features, ids=train)
    index_path = index.save(out / "features.index",
                            metadata={**metadata, "store": str(store.resolve())})
    found, neighbours = search(index, simclr.transform(X[test]), y, y[test])
    echo(f"extracted {features.shape[0]} x {features.shape[1]} features to {store}; FAISS "
         f"search: precision@{found['k']} {found['precision_at_k']:.1%} at "
         f"{found['queries_per_s']:,.0f} queries/s")
    echo(f"index: {index_path} (query it: featurekit search {index_path} {train[0]} -k 5)")
    grid = plot_neighbours(X, y, test[:N_GRID], neighbours[:N_GRID, :N_GRID],
                           out / "neighbours.png")
    if grid is not None:
        echo(f"neighbour grid: {grid} ({N_GRID} test digits, each beside its {N_GRID} "
             "nearest training digits)")

    untrained = featurekit.create("pretrained", **common).fit(X[train])
    rows = evaluate({"raw pixels": "raw", "untrained small_cnn": untrained,
                     "SimCLR small_cnn": simclr}, X[train], y[train], X[test], y[test])
    echo(format_table(rows))
    plot = plot_history(simclr.history_, out / "loss.png")
    if plot is not None:
        echo(f"loss curve: {plot}")
    else:
        echo(f"(no loss curve or neighbour grid: they need matplotlib, {plots.INSTALL_HINT})")
    results = {"n_train": len(train), "n_test": len(test), "epochs": epochs,
               "fit_seconds": fit_seconds, "search": found, "index": str(index_path),
               "table": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
