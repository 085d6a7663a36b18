"""The hooks a featurekit plugin may implement.

Every hook is prefixed ``featurekit_``. Registration hooks receive a registry
object and call its ``add_*`` methods (tox's ``register.add_run_env`` pattern),
so a plugin never builds the data structures the core keeps.
See ``docs/plugins.md`` for a worked example of each hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from featurekit.registry import Registry

PROJECT = "featurekit"
ENTRY_POINT_GROUP = "featurekit.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def featurekit_register_methods(registry: Registry) -> None:
    """Register method estimator classes with ``registry.add_method(cls)``."""


@hookspec
def featurekit_register_backbones(registry: Registry) -> None:
    """Register backbone factories with ``registry.add_backbone(name, factory, ...)``."""


@hookspec
def featurekit_register_augmentations(registry: Registry) -> None:
    """Register augmentation factories with ``registry.add_augmentation(name, factory, ...)``."""


@hookspec
def featurekit_register_commands(cli: click.Group) -> None:
    """Add click commands to the ``featurekit`` command-line group."""


@hookspec
def featurekit_on_epoch_end(estimator: Any, epoch: int, history: dict[str, list[float]]) -> None:
    """Observe the end of a training epoch (``epoch`` counts from 1).

    ``history`` is the estimator's ``history_`` so far. An observer that raises
    an ``Exception`` is reported as a warning and training goes on; a
    ``KeyboardInterrupt`` stops the fit (the last checkpoint is kept).
    """
