"""Atomic checkpoints of a fit: tensors and primitives only.

A checkpoint lives in ``checkpoint_dir/<fingerprint>/checkpoint.pt``; the
fingerprint covers the estimator class, its parameters (other than those that
do not change the result) and the data, so a run only ever resumes its own
state. Files are written to a temporary name, fsynced and renamed, so a crash
mid-write leaves the previous checkpoint intact; they load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurekit.exceptions import TrainingError

#: Parameters that do not change what a fit computes.
NOT_FINGERPRINTED = ("verbose", "num_workers", "checkpoint_dir", "resume", "warm_start")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return "sha256:" + hashlib.sha256(np.ascontiguousarray(arr).view(np.uint8).data).hexdigest()
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def fingerprint(estimator: Any, data_fingerprint: str) -> str:
    """A short hex digest of the estimator's class, result-relevant params and data."""
    params = {k: v for k, v in estimator.get_params(deep=False).items()
              if k not in NOT_FINGERPRINTED}
    key = json.dumps({"class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
                      "params": _jsonable(params), "data": data_fingerprint}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Checkpointer:
    """Reads and writes the checkpoint of one fingerprinted run."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str):
        self.path = Path(directory) / fingerprint / "checkpoint.pt"

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainingError(f"cannot read checkpoint {self.path}: {exc}. Delete it, or pass "
                                "resume=False to start over") from None

    def save(self, state: dict) -> None:
        atomic_torch_save(state, self.path)
