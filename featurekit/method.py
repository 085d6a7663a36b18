"""The contract a method plugin implements (the torch side).

A method is a :class:`featurekit.FeatureExtractor` subclass. Besides its
hyperparameters (in ``__init__``) it declares a few class attributes and
implements a handful of hooks. The core calls them; the method never moves
tensors between devices, calls ``.backward()`` or ``.step()``, wraps DDP,
shows progress or touches files. See ``docs/methods.md`` for a complete
minimal example.

Class attributes
----------------
name : str
    Registry name, lower case (``"simclr"``).
family : str
    ``"supervised"``, ``"contrastive"``, ``"reconstructive"``, ``"adversarial"``,
    ``"disentangling"`` or a plugin's own.
modalities : tuple of str
    Inputs it can learn from: ``"image"``, ``"tabular"``, ``"audio"``.
y_usage : {"ignored", "target", "metadata"}
    ``ignored``: ``fit(X, y)`` accepts and ignores ``y``; ``target``: ``y`` is
    required (a classifier); ``metadata``: named fit arguments listed in
    ``metadata_args`` (``groups=``, ``domains=``) carry the labels.
metadata_args : tuple of str
    Names of the fit metadata a ``"metadata"`` method takes.
verbs : tuple of str
    Extra public methods beyond fit/transform (``"predict"``, ``"translate"``...),
    exercised by the conformance kit.
momentum_modules : tuple of str
    Keys of ``build``'s ModuleDict updated without gradients (EMA targets);
    the conformance kit checks they get no gradient and do move.
supports_distributed : bool
    True once the method is tested under several processes
    (:mod:`featurekit.distributed`): its losses use ``ctx.all_gather`` where
    they need other processes' samples, and its non-gradient state (queues,
    EMA targets) stays the same on every process. The trainer refuses the
    others under a process group. Default False.
tiny_params : dict, optional
    ``{modality: {param: value}}``: the conformance kit's small configuration
    where its default (a 4-channel ``small_cnn``, a 32-unit ``mlp``) does not
    fit the method, e.g. MAE's one-block ViT.

Hooks
-----
build(spec) -> nn.ModuleDict
    Every module, with the backbone under ``"backbone"``; queues and image pools
    as registered buffers.
outputs(spec) -> dict[str, int]
    Ordered ``{part: dim}`` of what ``embed`` returns.
views(spec) -> list of callables
    Augmentations, one per view; each maps a float batch in [0, 1] (tabular:
    standardized rows) and a ``torch.Generator`` to an augmented batch.
optimizers(modules) -> dict[str, OptimizerSpec]
    Parameter groups and paper defaults, one entry per optimizer.
training_step(modules, batch, ctx)
    Computes losses and calls ``ctx.optimize(name, loss)`` once per update.
embed(modules, x) -> dict[str, Tensor]
    Features of a preprocessed batch; called in eval mode without grad.
extra_state(modules) / load_extra_state(modules, state)
    Anything that is neither a module's state nor an optimizer's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from featurekit.exceptions import PluginError

#: sklearn's parameter-constraint types, re-exported so that a plugin's
#: ``_parameter_constraints`` need not import a private sklearn module:
#: ``from featurekit.method import Interval, StrOptions``.
__all__ = ["Batch", "BuildSpec", "Interval", "OptimizerSpec", "StrOptions",
           "check_method_class"]

Y_USAGES = ("ignored", "target", "metadata")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("warmup_cosine", "constant", "constant_then_linear")


@dataclass
class OptimizerSpec:
    """One optimizer of a method, with the paper's defaults.

    ``lr`` is the base learning rate; with ``lr_batch_scaling`` the core uses
    ``lr * batch_size / 256`` (Goyal et al. 2017), as SimCLR, MoCo and BYOL do.
    ``schedule`` runs over the whole fit: ``warmup_cosine`` (linear warmup for
    ``warmup`` of training, then cosine to 0), ``constant``, or
    ``constant_then_linear`` (CycleGAN: constant, then linear to 0 over the
    last ``decay`` of training). ``fixed_lr`` param groups (SimSiam's predictor)
    keep their learning rate whatever the schedule.
    """

    params: Iterable[Any]
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "warmup_cosine"
    warmup: float = 0.0
    decay: float = 0.5
    lr_batch_scaling: bool = False


@dataclass
class BuildSpec:
    """What a method needs to know about the data to build its modules."""

    modality: str
    input_shape: tuple[int, ...]
    n_samples: int
    backbone_dim: int
    make_backbone: Callable[[], nn.Module]
    classes: tuple[Any, ...] | None = None
    metadata: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass
class Batch:
    """One training batch, already on the device and preprocessed.

    ``x`` is the clean batch; ``views`` the augmented batches (one per entry of
    the method's ``views``); ``y`` the encoded targets (``target`` methods);
    ``metadata`` the encoded fit metadata; ``index`` the rows of the data set.
    """

    x: torch.Tensor
    views: list[torch.Tensor]
    index: torch.Tensor
    y: torch.Tensor | None = None
    metadata: dict[str, torch.Tensor] = field(default_factory=dict)


def check_method_class(cls: type) -> None:
    """Raise :class:`PluginError` naming what a method class is missing."""
    from featurekit.base import FeatureExtractor

    where = f"{cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, FeatureExtractor)):
        raise PluginError(f"{where} is not a featurekit.FeatureExtractor subclass; "
                          "derive the method's estimator class from it")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name != name.lower():
        raise PluginError(f"{where} must set a lower-case class attribute `name` "
                          f"(the registry name); got {name!r}")
    if not isinstance(getattr(cls, "family", None), str):
        raise PluginError(f"{where} must set a class attribute `family` (e.g. 'contrastive')")
    if cls.y_usage not in Y_USAGES:
        raise PluginError(f"{where}.y_usage must be one of {Y_USAGES}; got {cls.y_usage!r}")
    for hook in ("build", "optimizers", "training_step", "embed"):
        if getattr(cls, hook) is getattr(FeatureExtractor, hook):
            raise PluginError(f"{where} does not implement `{hook}`, which every method "
                              "must provide (see docs/methods.md)")
    missing = [v for v in cls.verbs if not callable(getattr(cls, v, None))]
    if missing:
        raise PluginError(f"{where} declares verbs {missing} but does not define them")
