"""Functions run in each process of the data-parallel tests (tests/test_distributed.py).

Spawned processes import this module by name; each writes what it trained
to ``out / f"{tag}-rank{rank}.pt"`` for the parent to compare.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

import featurekit
from featurekit import distributed


def digits(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n].astype(np.float32), y[:n]


#: The runs compared with one process: (method, params). Augmentation-free, so
#: that the only difference between one process and two is the data parallelism.
RUNS = {
    "supervised": ("supervised", dict(backbone="mlp", max_epochs=2, batch_size=64,
                                      backbone_kwargs={"hidden": (32, 16), "batch_norm": False},
                                      random_state=0, verbose=0)),
    "simclr": ("simclr", dict(backbone="mlp", max_epochs=2, batch_size=64, corruption_rate=0.0,
                              backbone_kwargs={"hidden": (32, 16)}, projection_dim=8,
                              random_state=0, verbose=0)),
    "moco": ("moco_v2", dict(backbone="mlp", max_epochs=2, batch_size=64, corruption_rate=0.0,
                             backbone_kwargs={"hidden": (32, 16)}, projection_dim=8,
                             queue_size=128, random_state=0, verbose=0)),
}


def fit_run(tag: str) -> featurekit.FeatureExtractor:
    """The estimator of run ``tag``, fitted (on however many processes are running)."""
    method, params = RUNS[tag]
    X, y = digits()
    est = featurekit.create(method, **params)
    return est.fit(X, y) if est.y_usage == "target" else est.fit(X)


def summary(est: featurekit.FeatureExtractor) -> dict:
    return {"state": {k: v.detach().cpu().clone() for k, v in est.modules_.state_dict().items()},
            "history": dict(est.history_)}


def train(tags: list[str], out: str) -> None:
    torch.set_num_threads(1)  # as the parent's single-process run (tests/conftest.py)
    for tag in tags:
        torch.save(summary(fit_run(tag)), Path(out) / f"{tag}-rank{distributed.rank()}.pt")
