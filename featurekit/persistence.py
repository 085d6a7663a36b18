"""``save`` / ``load``: the safe, portable model format.

A model file is one ``torch.save`` dict of tensors and primitives: a JSON
string of the parameters, the featurekit/torch versions, the providing
plugin, the fitted attributes and the modules' state_dict. It loads with
``torch.load(weights_only=True)``, so opening a model never runs code from
the file. (Pickle and joblib also work, for sklearn's clone/joblib interop.)
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from featurekit.checkpoint import atomic_torch_save
from featurekit.exceptions import InputError, ParameterError
from featurekit.preprocess import InputSpec

FORMAT = "featurekit-model"
FORMAT_VERSION = 1
_SKIP = ("modules_", "backbone_", "feature_parts_")  # rebuilt with the modules


def _encode(value: Any) -> Any:
    """Fitted attribute -> tensors and primitives (what ``weights_only`` loads)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value))}
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, InputSpec):
        return {"__inputspec__": value.to_dict()}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise ParameterError(f"cannot save fitted attribute of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            arr = value["__ndarray__"]
            return arr.numpy() if isinstance(arr, torch.Tensor) else np.asarray(
                arr, dtype=np.dtype(value["dtype"]))
        if "__inputspec__" in value:
            return InputSpec.from_dict(value["__inputspec__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _params_json(estimator: Any) -> str:
    params = estimator.get_params(deep=False)
    if callable(params.get("backbone")):
        raise ParameterError("save() cannot store a backbone given as a Python callable; "
                             "register it as a backbone plugin, or use pickle/joblib")
    params["eval_set"] = None  # validation data is not part of the model
    for key in ("weights", "checkpoint_dir"):
        if isinstance(params.get(key), os.PathLike):
            params[key] = os.fspath(params[key])
    try:
        return json.dumps(params)
    except TypeError as exc:
        raise ParameterError(f"save() needs JSON-serializable parameters: {exc}") from None


def save(estimator: Any, path: str | os.PathLike) -> None:
    """Write a fitted estimator to ``path`` atomically (see the module docstring)."""
    import featurekit
    from featurekit.registry import get_registry

    check_is_fitted(estimator, "modules_")
    info = get_registry().methods.get(estimator.name)
    fitted = {k: _encode(v) for k, v in vars(estimator).items()
              if k.endswith("_") and not k.startswith("_") and k not in _SKIP}
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "method": estimator.name,
        "plugin": info.distribution if info else "<runtime>",
        "plugin_version": info.version if info else "",
        "versions": {"featurekit": featurekit.__version__, "torch": str(torch.__version__)},
        "params": _params_json(estimator),
        "fitted": fitted,
        "modules": {k: v.detach().cpu().contiguous()
                    for k, v in estimator.modules_.state_dict().items()},
    }
    atomic_torch_save(payload, path)


def load(path: str | os.PathLike):
    """Load a model written by ``est.save(path)``; never unpickles code."""
    from featurekit.assembly import read_model_file
    from featurekit.registry import get_registry

    payload = read_model_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{os.fspath(path)!r} is not a featurekit model file (written by "
                         "est.save); for a plain state_dict use weights= instead")
    try:
        cls = get_registry().method(payload["method"]).cls
    except KeyError:
        raise InputError(f"{os.fspath(path)!r} holds a {payload['method']!r} model from package "
                         f"{payload['plugin']!r} {payload['plugin_version']}, which is not "
                         f"installed; pip install {payload['plugin']}") from None
    estimator = cls(**json.loads(payload["params"]))
    for key, value in payload["fitted"].items():
        setattr(estimator, key, _decode(value))
    estimator._restore_modules(payload["modules"])
    return estimator
