"""The sklearn-facing estimator every method shares: :class:`FeatureExtractor`.

It owns the data flow (input adapters -> device -> preprocessing -> the
method's hooks -> float32 features), parameter validation, determinism,
pickling and ``get_feature_names_out``. It never knows a loss: that is the
method's (see :mod:`featurekit.method`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any, Callable, Iterator

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from torch import nn

from featurekit import assembly, distributed
from featurekit.checkpoint import Checkpointer, fingerprint
from featurekit.data import inputs
from featurekit.exceptions import InputError, ParameterError, TrainingError
from featurekit.method import BuildSpec, OptimizerSpec
from featurekit.preprocess import InputSpec, Preprocessor
from featurekit.training import Trainer, resolve_optimizer_specs

#: The parameters every method estimator lists after its own (with these defaults,
#: unless a method documents a different one). ``tests/test_common.py`` checks it.
COMMON_PARAMS: dict[str, Any] = {
    "backbone_kwargs": None, "weights": None, "part": None,
    "max_epochs": 10, "batch_size": 256, "inference_batch_size": 256,
    "optimizer": "auto", "lr": "auto", "weight_decay": "auto", "gradient_clip": None,
    "device": "auto", "precision": "auto", "num_workers": 0, "random_state": None,
    "verbose": 1, "checkpoint_dir": None, "resume": "auto", "warm_start": False,
    "eval_set": None, "n_iter_no_change": None,
    "image_size": None, "channels": "auto", "scale": "auto", "image_shape": None,
}

_COMMON_CONSTRAINTS: dict[str, list] = {
    "backbone": [str, callable],
    "backbone_kwargs": [dict, None],
    "weights": [str, os.PathLike, None],
    "part": [str, list, tuple, None],
    "max_epochs": [Interval(Integral, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 2, None, closed="left")],
    "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
    "optimizer": [StrOptions({"auto", "sgd", "adam", "adamw"}), dict],
    "lr": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither"), dict],
    "weight_decay": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left"), dict],
    "gradient_clip": [Interval(Real, 0, None, closed="neither"), None],
    "device": [str, torch.device],
    "precision": [StrOptions({"auto", "bf16", "32"})],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "checkpoint_dir": [str, os.PathLike, None],
    "resume": [StrOptions({"auto"}), "boolean"],
    "warm_start": ["boolean"],
    "eval_set": [tuple, None],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
    "image_size": [Interval(Integral, 1, None, closed="left"), None],
    "channels": [StrOptions({"auto", "first", "last"})],
    "scale": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
    "image_shape": [tuple, list, None],
}

#: The parameters of a method that takes audio (``"audio"`` in ``modalities``), and
#: their constraints: add both to the method's ``__init__`` and ``_parameter_constraints``.
AUDIO_PARAMS: dict[str, Any] = {"modality": "auto", "sample_rate": 16000}
AUDIO_CONSTRAINTS: dict[str, list] = {
    "modality": [StrOptions({"auto", "image", "audio"})],
    "sample_rate": [Interval(Integral, 1, None, closed="left")],
}


@contextlib.contextmanager
def _inference_mode(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """No grad, and autocast to ``dtype`` on ``device`` when it is not None."""
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                         enabled=dtype is not None):
        yield


def _raw_format(X: Any, sample: torch.Tensor, image_shape: Any, channels: str) -> dict:
    """How raw images were given (the ``layout``, ``flat`` and ``dtype`` of an InputSpec).

    Arrays keep their layout (flattened rows with ``image_shape``); image files
    and torch Datasets get numpy's image convention, (N, H, W) or (N, H, W, C).
    ``sample`` is a raw batch: uint8 input stays uint8.
    """
    if image_shape is not None:
        shape = (1, *image_shape)
    elif isinstance(X, (list, tuple)) and X and not isinstance(X[0], (str, os.PathLike)):
        shape = (len(X), *np.shape(X[0]))
    elif hasattr(X, "shape") and not isinstance(X, torch.utils.data.Dataset):
        shape = tuple(X.shape)
    else:
        shape = None
    if shape is None:
        layout = "none" if sample.shape[1] == 1 else "last"
    else:
        layout = inputs._layout(shape, channels)
    return {"layout": layout, "flat": image_shape is not None,
            "dtype": "uint8" if sample.dtype == torch.uint8 else "float32"}


def store_params(estimator: Any, params: dict[str, Any]) -> None:
    """Store ``__init__``'s arguments verbatim (call as ``store_params(self, locals())``)."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Base class of every featurekit method estimator.

    Subclasses set the class attributes and implement the hooks described in
    :mod:`featurekit.method`, and list all their hyperparameters plus
    :data:`COMMON_PARAMS` in ``__init__`` (``store_params(self, locals())``).

    Attributes
    ----------
    modules_ : nn.ModuleDict
        Everything ``build`` made, trained; ``backbone_`` is ``modules_["backbone"]``.
    feature_parts_ : dict of str to slice
        Each part's columns in the output of ``transform`` with ``part=None``.
    history_ : dict of str to list of float
        Per-epoch means of the losses (``loss``, or ``loss_<optimizer>``), the
        learning rate, the epoch time and, with ``eval_set``, ``eval_knn_accuracy``.
    n_epochs_ : int
        Epochs trained (fewer than ``max_epochs`` after early stopping).
    optimizer_params_ : dict
        The resolved optimizer, learning rate, weight decay and schedule per optimizer.
    input_spec_ : featurekit.preprocess.InputSpec
        The input's modality, shape, scale, working size and normalization.
    backbone_config_ : dict
        How the backbone was built (name, kwargs, channels, stem, feature size).
    n_features_in_ : int
        Number of input columns (tabular input, or images given with ``image_shape``).
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Standardization of tabular input.
    """

    name: str = ""
    family: str = ""
    modalities: tuple[str, ...] = ("image", "tabular")
    y_usage: str = "ignored"
    metadata_args: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    momentum_modules: tuple[str, ...] = ()
    supports_distributed: bool = False
    _parameter_constraints: dict = _COMMON_CONSTRAINTS

    # -- the method contract (overridden by plugins) -------------------------
    def build(self, spec: BuildSpec) -> nn.ModuleDict:
        raise NotImplementedError

    def outputs(self, spec: BuildSpec) -> dict[str, int]:
        return {"features": spec.backbone_dim}

    def views(self, spec: BuildSpec) -> list[Callable]:
        return []

    def optimizers(self, modules: nn.ModuleDict) -> dict[str, OptimizerSpec]:
        raise NotImplementedError

    def training_step(self, modules: nn.ModuleDict, batch: Any, ctx: Any) -> None:
        raise NotImplementedError

    def embed(self, modules: nn.ModuleDict, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def extra_state(self, modules: nn.ModuleDict) -> dict:
        return {}

    def load_extra_state(self, modules: nn.ModuleDict, state: dict) -> None:
        pass

    # -- sklearn API ---------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> FeatureExtractor:
        """Learn features from ``X`` (``y`` is used only by ``y_usage="target"`` methods).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            Tabular rows, or images as described in :mod:`featurekit.data.inputs`.
        y : array-like of shape (n_samples,), default=None
            Targets for supervised methods; ignored by self-supervised ones.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, {})

    def _fit(self, X: Any, y: Any, metadata: dict[str, Any]) -> FeatureExtractor:
        self._validate_params()
        self._check_part_param()
        device = assembly.resolve_device(self.device)
        seed = assembly.resolve_seed(self.random_state)
        world = distributed.current()
        if world is not None:  # random_state=None draws a seed per process: use rank 0's
            seed = world.broadcast_seed(seed)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            source, weights_state = self._fit_inputs(X)
            self.n_samples_fit_ = source.n
            targets = self._fit_targets(y, source.n, device)
            codes = self._fit_metadata(metadata, source.n, device)
            continuing = self.warm_start and hasattr(self, "modules_")
            spec = self._build_spec(weights_state)
            modules = self.modules_ if continuing else self._build_modules(spec)
            channels_last = self._place(modules, device)
            opt_specs = self.optimizers(modules)
            self.optimizer_params_ = resolve_optimizer_specs(
                opt_specs, optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay,
                batch_size=self.batch_size, owner=type(self).__name__)
            self._check_optimized(modules, opt_specs)
            prep = Preprocessor(self.input_spec_, device, channels_last)
            trainer = Trainer(
                method=self, modules=modules, optimizer_specs=opt_specs, preprocessor=prep,
                views=self.views(spec), device=device, autocast_dtype=self._autocast(device),
                max_epochs=self.max_epochs, batch_size=self.batch_size, seed=seed,
                verbose=self.verbose, gradient_clip=self.gradient_clip,
                num_workers=self.num_workers, checkpointer=None,
                evaluate=self._eval_set_scorer(modules, device),
                n_iter_no_change=self.n_iter_no_change, on_epoch_end=self._on_epoch_end)
            if self.checkpoint_dir is not None and not continuing:
                self._attach_checkpoints(trainer, source, y, metadata)
            self.modules_ = modules
            if opt_specs and self.max_epochs > 0:
                history = trainer.run(source, targets, codes)
            else:
                history = {}
            if continuing:
                history = {k: self.history_.get(k, []) + v for k, v in history.items()}
        modules.eval()
        self.history_ = history
        self.n_epochs_ = len(history.get("epoch_time", []))
        self.backbone_ = modules["backbone"]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Features of ``X``: the selected parts, concatenated, as float32.

        Parameters
        ----------
        X : array-like or images
            Input of the same kind and shape as given to ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
        """
        check_is_fitted(self, "modules_")
        source = self._transform_inputs(X)
        return self._features(source, self._selected_parts())

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns: ``simclr0, simclr1, ...`` (``name_part0`` for several parts)."""
        check_is_fitted(self, "feature_parts_")
        parts = self._selected_parts()
        names = []
        for part in parts:
            columns = self.feature_parts_[part]
            prefix = self.name if len(self.feature_parts_) == 1 else f"{self.name}_{part}"
            names += [f"{prefix}{i}" for i in range(columns.stop - columns.start)]
        return np.asarray(names, dtype=object)

    def save(self, path: str) -> None:
        """Save the fitted estimator safely (loads with ``featurekit.load``)."""
        from featurekit.persistence import save

        save(self, path)

    def export_backbone(self, path: str) -> None:
        """Write the backbone's state_dict (torchvision-compatible keys for torchvision models)."""
        from featurekit.checkpoint import atomic_torch_save

        check_is_fitted(self, "modules_")
        atomic_torch_save({k: v.detach().cpu() for k, v in self.backbone_.state_dict().items()},
                          path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.two_d_array = "tabular" in self.modalities
        tags.input_tags.three_d_array = "image" in self.modalities
        tags.target_tags.required = self.y_usage == "target"
        return tags

    # -- pickling: state_dicts on CPU, modules rebuilt on load ---------------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        modules = state.pop("modules_", None)
        state.pop("backbone_", None)
        if modules is not None:
            state["_modules_state"] = {k: v.detach().cpu() for k, v in modules.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        modules_state = state.pop("_modules_state", None)
        super().__setstate__(state)
        if modules_state is not None:
            self._restore_modules(modules_state)

    def _restore_modules(self, modules_state: dict) -> None:
        with torch.random.fork_rng(devices=[]):
            modules = self._build_modules(self._build_spec(None, pretrained=False))
        modules.load_state_dict(modules_state)
        modules.eval()
        self.modules_ = modules
        self.backbone_ = modules["backbone"]

    # -- internals -----------------------------------------------------------
    def _check_part_param(self) -> None:
        if self.part is not None and not isinstance(self.part, str):
            if not all(isinstance(p, str) for p in self.part) or not self.part:
                raise ParameterError(f"The 'part' parameter of {type(self).__name__} must be None, "
                                     f"a part name or a list of them. Got {self.part!r} instead.")

    def _selected_parts(self) -> list[str]:
        declared = list(self.feature_parts_)
        if self.part is None or self.part == "all":
            return declared
        wanted = [self.part] if isinstance(self.part, str) else list(self.part)
        unknown = [p for p in wanted if p not in declared]
        if unknown:
            raise ParameterError(f"{type(self).__name__} has parts {declared}; got part={self.part!r}")
        return wanted

    def _fit_inputs(self, X: Any) -> tuple[inputs.Source, dict | None]:
        """Validate ``X``, set the input attributes; return the source and backbone weights."""
        if self._is_audio(X):
            rate = getattr(self, "sample_rate", None)
            if not isinstance(rate, Integral) or isinstance(rate, bool) or rate < 1:
                raise ParameterError(f"The 'sample_rate' parameter of {type(self).__name__} must "
                                     f"be an int in [1, inf) (Hz). Got {rate!r} instead.")
            source = inputs.audio_source(X, sample_rate=int(rate))
            for name in ("n_features_in_", "feature_names_in_"):
                vars(self).pop(name, None)
            self.backbone_config_, self.input_spec_, state = assembly.audio_setup(self, source)
            return source, state
        if "tabular" in self.modalities and inputs.is_tabular(X, self.image_shape):
            if inputs.is_lazy_rows(X):  # an HDF5 dataset or FeatureStore: read batch by batch
                source = inputs.lazy_tabular_source(X, min_samples=2)
                self.n_features_in_ = source.sample_shape[0]
                vars(self).pop("feature_names_in_", None)
                mean, scale, peak = inputs.column_stats(source)
            else:
                Xv = validate_data(self, X, reset=True, dtype=[np.float32, np.float64],
                                   ensure_min_samples=2)
                source = inputs.tabular_source(Xv)
                mean, scale, peak = Xv.mean(axis=0), Xv.std(axis=0), np.abs(Xv).max(initial=1.0)
            self.mean_ = mean.astype(np.float32)
            self.scale_ = np.where(scale > 1e-12 * peak, scale, 1.0).astype(np.float32)
            n_features = source.sample_shape[0]
            self.backbone_config_, state = assembly.tabular_setup(self, n_features)
            self.input_spec_ = InputSpec("tabular", (n_features,), 1.0, (n_features,),
                                         tuple(self.mean_.tolist()), tuple(self.scale_.tolist()))
            return source, state
        if inputs.is_tabular(X, self.image_shape):
            audio = ("modality='audio' if the rows are waveforms, or "
                     if "audio" in self.modalities else "")
            raise InputError(f"{type(self).__name__} learns from {', '.join(self.modalities)} data "
                             f"and X is a 2-D table; pass {audio}image_shape=(H, W[, C]) if the "
                             "rows are flattened images")
        if "image" not in self.modalities:
            raise InputError(f"{type(self).__name__} does not take images (it takes "
                             f"{', '.join(self.modalities)})")
        source = self._image_source(X)
        if self.image_shape is not None:
            self.n_features_in_ = int(np.prod(source.sample_shape))
        sample = next(source.batches(np.arange(min(source.n, 512)), 512))
        config, spec, state = assembly.image_setup(self, source.sample_shape, sample, source.scale)
        spec = dataclasses.replace(spec, **_raw_format(X, sample, self.image_shape, self.channels))
        self.backbone_config_, self.input_spec_ = config, spec
        return source, state

    def _is_audio(self, X: Any) -> bool:
        """Whether ``X`` is audio: Waveforms, anything with ``modality="audio"``, or with
        ``modality="auto"`` a list of 1-D arrays; only for methods that take audio."""
        if "audio" not in self.modalities:
            if isinstance(X, inputs.Waveforms):
                raise InputError(f"X holds audio (Waveforms), which {type(self).__name__} does "
                                 f"not take (it takes {', '.join(self.modalities)} data)")
            return False
        modality = getattr(self, "modality", "auto")
        if modality not in ("auto", "image", "audio"):
            raise ParameterError(f"The 'modality' parameter of {type(self).__name__} must be a "
                                 f"str among {{'auto', 'image', 'audio'}}. Got {modality!r} instead.")
        if isinstance(X, inputs.Waveforms) and modality == "image":
            raise InputError("X holds audio (Waveforms), but modality='image'; set "
                             "modality='audio' or 'auto'")
        return (modality == "audio" or isinstance(X, inputs.Waveforms)
                or (modality == "auto" and inputs.is_audio_list(X)))

    def _image_source(self, X: Any, min_samples: int = 2) -> inputs.Source:
        return inputs.image_source(X, channels=self.channels, image_size=self.image_size,
                                   scale=self.scale, image_shape=self.image_shape,
                                   min_samples=min_samples)

    def _transform_inputs(self, X: Any) -> inputs.Source:
        spec = InputSpec.from_dict(self.input_spec_.to_dict())
        if spec.modality == "audio":
            return inputs.audio_source(X, sample_rate=spec.sample_rate, min_samples=0)
        if isinstance(X, inputs.Waveforms):
            raise InputError(f"X holds audio (Waveforms), but {type(self).__name__} was fitted "
                             f"on {spec.modality} data")
        if spec.modality == "tabular":
            if inputs.is_lazy_rows(X):
                return inputs.lazy_tabular_source(X, n_features=self.n_features_in_)
            Xv = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
            return inputs.tabular_source(Xv)
        source = self._image_source(X, min_samples=0)
        if source.n == 0:
            raise InputError("X is empty (n_samples=0)")
        if tuple(source.sample_shape[1:]) != tuple(spec.sample_shape[1:]) or \
                source.sample_shape[0] > spec.working_shape[0]:
            raise InputError(f"X has images of shape {tuple(source.sample_shape)} (C, H, W), but "
                             f"{type(self).__name__} was fitted on {tuple(spec.sample_shape)}; "
                             "pass images like those given to fit, or set image_size=")
        return source

    def _fit_targets(self, y: Any, n: int, device: torch.device) -> torch.Tensor | None:
        if self.y_usage != "target":
            return None
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import column_or_1d

        if y is None:
            raise ValueError(f"requires y to be passed, but the target y is None "
                             f"({type(self).__name__} is supervised)")
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != n:
            raise InputError(f"X and y have different lengths: n_samples={n}, len(y)={len(y)}")
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InputError(f"{type(self).__name__} needs at least 2 classes in y; got 1 class "
                             f"({classes[0]!r})")
        self.classes_ = classes
        return torch.as_tensor(codes, dtype=torch.long, device=device)

    def _fit_metadata(self, metadata: dict[str, Any], n: int,
                      device: torch.device) -> dict[str, torch.Tensor]:
        codes, self.metadata_values_ = {}, {}
        for name in self.metadata_args:
            values = metadata.get(name)
            if values is None:
                raise InputError(f"{type(self).__name__}.fit needs {name}= (one value per sample)")
            values = np.asarray(values)
            if len(values) != n:
                raise InputError(f"X and {name} have different lengths: n_samples={n}, "
                                 f"len({name})={len(values)}")
            uniq, code = np.unique(values, return_inverse=True)
            self.metadata_values_[name] = uniq
            codes[name] = torch.as_tensor(code, dtype=torch.long, device=device)
        return codes

    def _build_spec(self, state: dict | None, pretrained: bool = True) -> BuildSpec:
        """The method's build spec; ``pretrained=False`` skips torchvision weights (the
        caller loads a state_dict instead, and nothing is downloaded)."""
        config, spec = dict(self.backbone_config_), self.input_spec_
        if not pretrained:
            config["torchvision_weights"] = None
        classes = tuple(np.asarray(self.classes_).tolist()) if hasattr(self, "classes_") else None
        meta = {k: tuple(np.asarray(v).tolist())
                for k, v in getattr(self, "metadata_values_", {}).items()}
        return BuildSpec(
            modality=spec.modality, input_shape=tuple(spec.working_shape),
            n_samples=self.n_samples_fit_, backbone_dim=config["feature_dim"],
            make_backbone=lambda: assembly.make_backbone(config, self.backbone, state),
            classes=classes, metadata=meta)

    def _build_modules(self, spec: BuildSpec) -> nn.ModuleDict:
        modules = self.build(spec)
        if not isinstance(modules, nn.ModuleDict) or "backbone" not in modules:
            raise TrainingError(f"{type(self).__name__}.build must return an nn.ModuleDict with "
                                "the backbone under 'backbone'")
        outputs = self.outputs(spec)
        self.feature_parts_, start = {}, 0
        for part, dim in outputs.items():
            self.feature_parts_[part] = slice(start, start + int(dim))
            start += int(dim)
        return modules

    def _attach_checkpoints(self, trainer: Trainer, source: inputs.Source, y: Any,
                            metadata: dict) -> None:
        """Checkpoint this run; resume it if an unfinished checkpoint of it exists."""
        trainer.checkpointer = Checkpointer(
            self.checkpoint_dir, fingerprint(self, self._data_fingerprint(source, y, metadata)))
        state = trainer.checkpointer.load() if self.resume is not False else None
        if state is not None and not state["finished"]:
            trainer.restore(state)
        elif self.resume is True and state is None:
            raise TrainingError(f"resume=True, but no checkpoint exists at "
                                f"{trainer.checkpointer.path}")

    def _place(self, modules: nn.ModuleDict, device: torch.device) -> bool:
        """Move ``modules`` to ``device``, channels-last for conv nets on images
        (1.3x faster on CPU); return whether inputs must be channels-last too."""
        channels_last = (self.input_spec_.modality == "image" and device.type in ("cpu", "cuda")
                         and any(isinstance(m, nn.Conv2d) for m in modules.modules()))
        modules.to(device, memory_format=torch.channels_last if channels_last
                   else torch.preserve_format)
        return channels_last

    def _autocast(self, device: torch.device) -> torch.dtype | None:
        if self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda"):
            return torch.bfloat16
        return None

    def _check_optimized(self, modules: nn.ModuleDict, specs: dict[str, OptimizerSpec]) -> None:
        seen: dict[int, str] = {}
        for name, spec in specs.items():
            groups = list(spec.params)
            spec.params = groups
            params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
            for p in params:
                if id(p) in seen:
                    raise TrainingError(f"{type(self).__name__}: a parameter is in both the "
                                        f"{seen[id(p)]!r} and {name!r} optimizers")
                seen[id(p)] = name
        loose = [n for n, p in modules.named_parameters() if p.requires_grad and id(p) not in seen]
        if loose:
            raise TrainingError(f"{type(self).__name__}: trainable parameters in no optimizer: "
                                f"{loose[:5]}; add them to an optimizer or set requires_grad=False")

    def _features(self, source: inputs.Source, parts: list[str],
                  modules: nn.ModuleDict | None = None) -> np.ndarray:
        """The selected parts of ``embed``, concatenated, for every sample of ``source``."""
        return self._apply_batches(source, self._parts_fn(parts), self._parts_width(parts),
                                   modules)

    def _iter_features(self, source: inputs.Source, order: np.ndarray) -> Iterator[np.ndarray]:
        """The selected parts' features of ``source``'s samples in ``order``, one float32
        block per batch: memory bounded by the batch (streaming extraction)."""
        return self._iter_batches(source, self._parts_fn(self._selected_parts()), order)

    def _parts_width(self, parts: list[str]) -> int:
        return sum(self.feature_parts_[p].stop - self.feature_parts_[p].start for p in parts)

    def _parts_fn(self, parts: list[str]
                  ) -> Callable[[nn.ModuleDict, torch.Tensor], torch.Tensor]:
        def fn(mods: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
            emb = self.embed(mods, x)
            if len(parts) == 1:
                return emb[parts[0]]
            return torch.cat([emb[p].float() for p in parts], dim=1)

        return fn

    def _apply_batches(self, source: inputs.Source,
                       fn: Callable[[nn.ModuleDict, torch.Tensor], torch.Tensor], width: int,
                       modules: nn.ModuleDict | None = None) -> np.ndarray:
        """Run ``fn(modules, x)`` over ``source`` in eval mode, without grad, batch by batch,
        into one preallocated float32 array of shape (n_samples, width)."""
        out = np.empty((source.n, width), dtype=np.float32)
        start = 0
        for block in self._iter_batches(source, fn, np.arange(source.n), modules):
            out[start:start + len(block)] = block
            start += len(block)
        return out

    def _iter_batches(self, source: inputs.Source,
                      fn: Callable[[nn.ModuleDict, torch.Tensor], torch.Tensor],
                      order: np.ndarray, modules: nn.ModuleDict | None = None
                      ) -> Iterator[np.ndarray]:
        """Yield ``fn(modules, x)`` as float32 arrays for ``source``'s samples in ``order``."""
        spec = self.input_spec_
        if spec.modality == "image" and source.scale != spec.scale:
            # Float images in [0, 1] for a model fitted on uint8 ones, or the reverse.
            spec = dataclasses.replace(spec, scale=source.scale)
        modules, prep, dtype = self._inference_setup(modules, spec)
        for raw in source.batches(order, self.inference_batch_size, self.num_workers):
            # Entered per batch, not around the loop: grad mode and autocast are global
            # state, which a suspended generator must not leave switched for its caller.
            with _inference_mode(prep.device, dtype):
                block = fn(modules, prep(raw)).float()
            yield block.cpu().numpy()

    def _inference_setup(self, modules: nn.ModuleDict | None = None,
                         spec: InputSpec | None = None
                         ) -> tuple[nn.ModuleDict, Preprocessor, torch.dtype | None]:
        """The modules placed on the device in eval mode, a preprocessor for ``spec`` (by
        default the fitted one), and the autocast dtype."""
        modules = self.modules_ if modules is None else modules
        device = assembly.resolve_device(self.device)
        prep = Preprocessor(spec or self.input_spec_, device, self._place(modules, device))
        modules.eval()  # the trainer switches back to train mode itself
        return modules, prep, self._autocast(device)

    # -- helpers for verbs that output inputs (decoders, generators, translators) --
    def _decode_rows(self, rows: Any, fn: Callable[[nn.ModuleDict, torch.Tensor], Any], *,
                     n_columns: int, verb: str, random_state: Any = None) -> Any:
        """Inputs made by ``fn`` from rows of codes (features, latent vectors), given back
        like the input of ``fit``.

        Parameters
        ----------
        rows : array-like of shape (n_samples, n_columns)
            The codes; validated (finite numbers, ``n_columns`` of them per row).
        fn : callable
            ``fn(modules, z)`` maps a float32 batch of rows, on the device, to a
            model-space batch of inputs, or a tuple of outputs: floating ones are
            model-space batches, given back as inputs; others (boolean masks,
            indices) are returned as they are. It runs in eval mode, without
            grad, under the fit's autocast, in batches of ``inference_batch_size``.
        n_columns : int
            The number of columns ``rows`` must have.
        verb : str
            The public method calling, named in error messages.
        random_state : int, RandomState instance or None, default=None
            Seeds torch's RNG for the draws ``fn`` makes; the caller's RNG state
            is left as it was.

        Returns
        -------
        ndarray or tuple of ndarray
            One array per output of ``fn``; inputs in the convention of the input
            given to ``fit`` (:meth:`featurekit.preprocess.Preprocessor.inverse`).
        """
        check_is_fitted(self, "modules_")
        rows = check_array(rows, dtype=np.float32, input_name="X")
        if rows.shape[1] != n_columns:
            raise InputError(f"X has {rows.shape[1]} columns, but {type(self).__name__}.{verb} "
                             f"expects {n_columns} (one per component)")
        size = self.inference_batch_size
        batches = (torch.from_numpy(rows[i:i + size]) for i in range(0, len(rows), size))
        return self._inverse_batches(batches, fn, lambda prep, z: z.to(prep.device),
                                     random_state)

    def _map_inputs(self, X: Any, fn: Callable[[nn.ModuleDict, torch.Tensor], Any], *,
                    random_state: Any = None, sample_shape: tuple[int, ...] | None = None,
                    layout: str | None = None) -> Any:
        """``fn`` over ``X``'s preprocessed batches, its outputs given back like ``X``
        (reconstructions, translations).

        ``X`` is validated as by ``transform``; ``fn(modules, x)`` maps a
        preprocessed batch to a model-space batch (or a tuple of outputs), and
        runs as in :meth:`_decode_rows`, which describes its outputs and
        ``random_state``. Inputs come back in ``X``'s layout, scale and dtype
        (images at the fitted size), or, for images, at another ``sample_shape``
        (C, H, W) and channel ``layout`` when given (a translation to another
        domain).
        """
        check_is_fitted(self, "modules_")
        source = self._transform_inputs(X)
        spec = self.input_spec_
        if spec.modality == "image":
            first = next(source.batches(np.arange(1), 1))
            raw = _raw_format(X, first, self.image_shape, self.channels)
            spec = dataclasses.replace(
                spec, sample_shape=tuple(sample_shape or source.sample_shape),
                scale=source.scale, **{**raw, "layout": layout or raw["layout"]})
        batches = source.batches(np.arange(source.n), self.inference_batch_size,
                                 self.num_workers)
        return self._inverse_batches(batches, fn, lambda prep, raw: prep(raw), random_state,
                                     spec)

    def _inverse_batches(self, batches: Iterable[torch.Tensor],
                         fn: Callable[[nn.ModuleDict, torch.Tensor], Any],
                         prepare: Callable[[Preprocessor, torch.Tensor], torch.Tensor],
                         random_state: Any, spec: InputSpec | None = None) -> Any:
        """``fn(modules, prepare(prep, batch))`` per batch, under a forked torch RNG seeded
        from ``random_state``; floating outputs mapped back by ``prep.inverse``."""
        modules, prep, dtype = self._inference_setup(spec=spec)
        device = prep.device
        blocks = []
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(assembly.resolve_seed(random_state))
            for batch in batches:
                with _inference_mode(device, dtype):
                    out = fn(modules, prepare(prep, batch))
                outs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
                with torch.no_grad():
                    blocks.append([(prep.inverse(o) if o.is_floating_point() else o).cpu().numpy()
                                   for o in outs])
        arrays = tuple(np.concatenate(column) for column in zip(*blocks))
        return arrays[0] if len(arrays) == 1 else arrays

    def _eval_set_scorer(self, modules: nn.ModuleDict, device: torch.device):
        if self.eval_set is None:
            return None
        if not (isinstance(self.eval_set, tuple) and len(self.eval_set) == 2):
            raise ParameterError("The 'eval_set' parameter must be a tuple (X_val, y_val).")
        from featurekit.evaluate import knn_loo_accuracy

        X_val, y_val = self.eval_set
        source = self._transform_inputs(X_val)
        parts = list(self.feature_parts_)

        def score() -> float:
            return knn_loo_accuracy(self._features(source, parts, modules), np.asarray(y_val))

        return score

    def _data_fingerprint(self, source: inputs.Source, y: Any, metadata: dict) -> str:
        from featurekit.checkpoint import _jsonable

        extra = _jsonable({"y": None if y is None else np.asarray(y),
                           **{k: np.asarray(v) for k, v in metadata.items()}})
        return f"{source.fingerprint()}:{extra}"

    def _on_epoch_end(self, epoch: int, history: dict) -> None:
        from featurekit.registry import get_registry

        hook = get_registry().plugin_manager.hook.featurekit_on_epoch_end
        for impl in hook.get_hookimpls():
            try:
                impl.function(estimator=self, epoch=epoch, history=history)
            except Exception as exc:
                warnings.warn(f"featurekit_on_epoch_end of plugin {impl.plugin_name!r} raised "
                              f"{type(exc).__name__}: {exc}", stacklevel=2)

