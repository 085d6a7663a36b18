"""From parameters and data to a backbone and an input spec.

Decides the working input size, the small-image stem, what ``weights`` means
(a featurekit model file, a torchvision-compatible state_dict file, or a
torchvision weights name) and the normalization, so ``FeatureExtractor.fit``
only orchestrates.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from featurekit.exceptions import InputError, ParameterError
from featurekit.preprocess import InputSpec
from featurekit.registry import get_registry

SMALL_IMAGE = 64  # images up to this size get the small-image stem (when untrained)
HEAD_PREFIXES = ("fc.", "classifier.", "heads.", "head.")


def read_model_file(path: str | os.PathLike) -> dict:
    """Load a ``save()`` file or a state_dict safely (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read weights file {os.fspath(path)!r}: {exc}") from None


def resolve_weights(weights: Any) -> tuple[str, Any]:
    """Classify ``weights``: ("none", None), ("featurekit", payload),
    ("state_dict", dict) or ("torchvision", name)."""
    if weights is None:
        return "none", None
    if isinstance(weights, (str, os.PathLike)) and os.path.exists(weights):
        payload = read_model_file(weights)
        if isinstance(payload, dict) and payload.get("format") == "featurekit-model":
            return "featurekit", payload
        if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
            return "state_dict", payload
        raise InputError(f"weights file {os.fspath(weights)!r} is neither a featurekit model "
                         "(from est.save) nor a state_dict of tensors")
    if isinstance(weights, str):
        if any(sep in weights for sep in ("/", os.sep)) or weights.endswith((".pt", ".pth")):
            raise InputError(f"weights file {weights!r} does not exist")
        return "torchvision", weights
    raise ParameterError("The 'weights' parameter must be None, a path to a weights file, or a "
                         f"torchvision weights name such as 'IMAGENET1K_V1'. Got {weights!r} instead.")


def backbone_state_from(payload: dict) -> dict[str, torch.Tensor]:
    """The backbone's tensors inside a featurekit model file."""
    return {k[len("backbone."):]: v for k, v in payload["modules"].items()
            if k.startswith("backbone.")}


def make_backbone(config: dict, backbone: Any,
                  state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Build the backbone described by ``config`` (and load ``state`` when given).

    ``config["backbone"]`` names a registered backbone; ``backbone`` is used
    instead when the user gave a callable (which ``config`` cannot hold).
    """
    kwargs = dict(config.get("backbone_kwargs") or {})
    if config.get("backbone") is not None:
        backbone = config["backbone"]
    if callable(backbone):
        module = backbone(**kwargs)
    else:
        info = get_registry().backbone(backbone)
        if config["modality"] == "tabular":
            module = info.factory(n_features=config["n_features"], **kwargs)
        elif config["modality"] == "audio":
            if info.modality != "audio":
                raise ParameterError(f"backbone {backbone!r} is for {info.modality} data and "
                                     "cannot take audio; an audio method builds its own encoder "
                                     "(featurekit.audio.LogMel and a network over it) or takes "
                                     "a registered audio backbone")
            module = info.factory(sample_rate=config["sample_rate"], **kwargs)
        else:
            module = info.factory(in_channels=config["in_channels"],
                                  input_size=config["input_size"],
                                  small_stem=config["small_stem"],
                                  weights=config["torchvision_weights"], **kwargs)
    if not isinstance(module, nn.Module):
        raise ParameterError(f"backbone {backbone!r} returned {type(module).__name__}, "
                             "not a torch.nn.Module")
    if state is not None:
        try:
            missing, unexpected = module.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches raise even with strict=False
            raise InputError(f"weights do not fit backbone {backbone!r} ({str(exc).splitlines()[-1].strip()}); "
                             "check backbone= and backbone_kwargs= against the weights' "
                             "architecture") from None
        unexpected = [k for k in unexpected if not k.startswith(HEAD_PREFIXES)]
        if missing or unexpected:
            raise InputError(f"weights do not fit backbone {backbone!r}: missing keys "
                             f"{missing[:5]}, unexpected keys {unexpected[:5]}; check backbone= "
                             "and backbone_kwargs= against the weights' architecture")
    return module


def feature_dim(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """``module.out_features``, or found by a forward pass on a dummy batch."""
    if isinstance(getattr(module, "out_features", None), int):
        return module.out_features
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(2, *input_shape))
    module.train(was_training)
    if out.ndim != 2:
        raise ParameterError(f"the backbone must return (n, d) features; it returned shape "
                             f"{tuple(out.shape)}. Add pooling and flattening to it")
    return int(out.shape[1])


def image_setup(est: Any, sample_shape: tuple[int, ...], sample: torch.Tensor,
                scale: float) -> tuple[dict, InputSpec, dict | None]:
    """Backbone config, input spec and backbone state for image input.

    ``sample`` is a raw batch used to estimate the normalization when the
    backbone starts untrained.
    """
    kind, payload = resolve_weights(est.weights)
    c, h, w = sample_shape
    state = None
    if kind == "featurekit":
        saved = payload["fitted"]
        config = dict(saved["backbone_config_"], torchvision_weights=None)
        spec = InputSpec.from_dict(saved["input_spec_"]["__inputspec__"])
        if c > spec.working_shape[0]:
            raise InputError(f"the weights were trained on {spec.working_shape[0]}-channel images; "
                             f"got {c}-channel images")
        spec = InputSpec("image", sample_shape, scale, spec.working_shape, spec.mean, spec.std)
        return config, spec, backbone_state_from(payload)
    info = None if callable(est.backbone) else get_registry().backbone(est.backbone)
    if info is not None and info.modality != "image":
        raise ParameterError(f"backbone {est.backbone!r} is for {info.modality} data; pick an "
                             "image backbone such as 'small_cnn' or 'resnet18'")
    min_size = info.min_input_size if info else 1
    size = max(h, w)
    if kind == "none":
        channels, small_stem = c, size <= SMALL_IMAGE
        mean, std = _channel_stats(sample, scale)
    else:
        from featurekit.backbones import IMAGENET_MEAN, IMAGENET_STD, weights_preprocessing

        channels, small_stem, mean, std = 3, False, IMAGENET_MEAN, IMAGENET_STD
        if kind == "torchvision":
            size, mean, std = weights_preprocessing(est.backbone, est.weights)
            h = w = size
        state = payload
    if min(h, w) < min_size:
        warnings.warn(f"images of {h}x{w} px are smaller than backbone {est.backbone!r} accepts "
                      f"({min_size} px); they are upsampled to {min_size} px", stacklevel=3)
        h, w = max(h, min_size), max(w, min_size)
    config = {"modality": "image", "in_channels": channels, "input_size": max(h, w),
              "small_stem": small_stem,
              "torchvision_weights": payload if kind == "torchvision" else None,
              **_backbone_name(est)}
    probe = make_backbone(config, est.backbone, state)
    exact = getattr(probe, "input_size", None)
    if isinstance(exact, int):
        h = w = exact
    config["feature_dim"] = feature_dim(probe, (channels, h, w))
    spec = InputSpec("image", sample_shape, scale, (channels, h, w), tuple(mean), tuple(std))
    return config, spec, state


def tabular_setup(est: Any, n_features: int) -> tuple[dict, dict | None]:
    """Backbone config (and backbone weights, from a featurekit model file) for tabular input."""
    kind, payload = resolve_weights(est.weights)
    if kind == "featurekit":
        config = dict(payload["fitted"]["backbone_config_"])
        if config.get("modality") != "tabular" or config["n_features"] != n_features:
            raise InputError(f"the weights were trained on other input ({config.get('modality')}, "
                             f"n_features={config.get('n_features')}); X has {n_features} features")
        return config, backbone_state_from(payload)
    if kind != "none":
        raise ParameterError("tabular backbones have no torchvision weights; pass weights=None "
                             "or a featurekit model file")
    if not callable(est.backbone):
        info = get_registry().backbone(est.backbone)
        if info.modality != "tabular":
            raise ParameterError(f"backbone {est.backbone!r} is for {info.modality} data, but X is "
                                 "a 2-D table; use backbone='mlp', or pass image_shape=(H, W[, C]) "
                                 "if the rows are flattened images")
    config = {"modality": "tabular", "n_features": n_features, **_backbone_name(est)}
    config["feature_dim"] = feature_dim(make_backbone(config, est.backbone), (n_features,))
    return config, None


def audio_setup(est: Any, source: Any) -> tuple[dict, InputSpec, dict | None]:
    """Backbone config, input spec and backbone weights for audio input.

    The spec records the sample rate and the longest and shortest clip of
    ``source`` (an :class:`~featurekit.data.inputs.AudioSource`). Audio
    methods build their own encoder, so the config only records the backbone
    parameter; a registered audio backbone (built with ``sample_rate=``) gets
    its ``feature_dim`` from a forward pass on silence, anything else ``None``.
    """
    kind, payload = resolve_weights(est.weights)
    lengths = source.lengths
    spec = InputSpec("audio", tuple(source.sample_shape), source.scale,
                     tuple(source.sample_shape), (0.0,), (1.0,), layout="none",
                     dtype="int16" if source.scale != 1.0 else "float32",
                     sample_rate=int(source.sample_rate), max_length=int(lengths.max()),
                     min_length=int(lengths.min()))
    if kind == "featurekit":
        config = dict(payload["fitted"]["backbone_config_"])
        if config.get("modality") != "audio":
            raise InputError(f"the weights were trained on {config.get('modality')} data; X is "
                             "audio")
        if config.get("sample_rate") != spec.sample_rate:
            raise InputError(f"the weights were trained on audio at {config.get('sample_rate')} "
                             f"Hz; X is at sample_rate={spec.sample_rate} Hz")
        return config, spec, backbone_state_from(payload)
    if kind != "none":
        raise ParameterError("audio backbones have no torchvision weights; pass weights=None or "
                             "a featurekit model file")
    config = {"modality": "audio", "sample_rate": spec.sample_rate, **_backbone_name(est),
              "feature_dim": None}
    info = None if callable(est.backbone) else get_registry().backbone(est.backbone)
    if info is not None and info.modality == "audio":
        from featurekit.audio import AudioBatch

        probe = make_backbone(config, est.backbone)
        dim = getattr(probe, "out_features", None)
        if not isinstance(dim, int):
            probe.eval()
            with torch.no_grad():
                out = probe(AudioBatch(torch.zeros(2, spec.max_length),
                                       torch.full((2,), spec.max_length)))
            dim = int(out.shape[1])
        config["feature_dim"] = dim
    return config, spec, None


def _backbone_name(est: Any) -> dict:
    """The backbone part of a config: a registered name and its kwargs (None for callables)."""
    return {"backbone": None if callable(est.backbone) else est.backbone,
            "backbone_kwargs": dict(est.backbone_kwargs or {})}


def _channel_stats(sample: torch.Tensor, scale: float) -> tuple[list[float], list[float]]:
    x = sample.float() / scale
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def resolve_device(device: Any) -> torch.device:
    """``"auto"``: cuda, then mps, then cpu; otherwise what the user named."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or "
                             f"'mps'. Got {device!r} instead.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' was asked for, but torch sees no CUDA device; "
                             "use device='auto' or 'cpu'")
    return dev


def resolve_seed(random_state: Any) -> int:
    """An int seed for torch from sklearn's ``random_state`` conventions."""
    if isinstance(random_state, (int, np.integer)):
        return int(random_state) % (2**31)
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))
