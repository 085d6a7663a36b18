"""Small real data sets shipped inside the package (see README.md beside this file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set: images ``(10000, 28, 28)`` uint8 and digits ``(10000,)`` int64.

    Shipped with featurekit under CC BY-SA 3.0 (Y. LeCun and C. Cortes).
    """
    with np.load(HERE / "mnist_test.npz", allow_pickle=False) as d:
        return d["x"], d["y"]


def standard_split(y: np.ndarray, test_size: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """featurekit's standard split: stratified, ``random_state=0`` (8,000 / 2,000 of 10,000)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=0)
