"""Plugin discovery and the registries of methods and backbones.

pluggy alone stops all discovery at the first plugin that fails to import and
keeps only one of two plugins that use the same name. featurekit therefore
loads each entry point of the ``featurekit.plugins`` group itself, one
try/except each, and calls every hook implementation one by one, so that one
broken plugin is reported (with its package) and every other one still works.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.metadata
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from featurekit import hookspecs
from featurekit.exceptions import DuplicateNameError, PluginError, UnknownNameError


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered something invalid."""


@dataclass(frozen=True)
class Source:
    """Where a registered item comes from: a distribution, its version, and the
    plugin API version it declares (None when it declares none)."""

    distribution: str
    version: str
    plugin: str
    api: int | None = None

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} (plugin {self.plugin!r})"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    cls: type
    source: Source

    @property
    def distribution(self) -> str:
        return self.source.distribution

    @property
    def version(self) -> str:
        return self.source.version


@dataclass(frozen=True)
class BackboneInfo:
    """A registered backbone.

    ``factory(**kwargs)`` returns an ``nn.Module`` mapping a normalized float
    batch to ``(n, d)`` features. ``pretrained`` lists the torchvision weight
    names it accepts (empty when it has none); ``min_input_size`` is the
    smallest image side it can take (0 for tabular backbones).
    """

    name: str
    factory: Callable[..., Any]
    modality: str
    min_input_size: int
    pretrained: tuple[str, ...]
    description: str
    source: Source


@dataclass(frozen=True)
class AugmentationInfo:
    """A registered augmentation.

    ``factory(**kwargs)`` returns a callable ``op(x, generator) -> Tensor``
    (see :mod:`featurekit.data.augment`) for batches of ``modality``.
    """

    name: str
    factory: Callable[..., Any]
    modality: str
    description: str
    source: Source


@dataclass(frozen=True)
class Failure:
    """A plugin (or one of its registrations) that failed, and why."""

    plugin: str
    distribution: str
    error: str


@dataclass
class Registry:
    """What the installed plugins registered. Built by :func:`get_registry`."""

    plugin_manager: pluggy.PluginManager
    methods: dict[str, MethodInfo] = field(default_factory=dict)
    backbones: dict[str, BackboneInfo] = field(default_factory=dict)
    augmentations: dict[str, AugmentationInfo] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    #: Plugins that loaded, with something to fix (an API version mismatch).
    notices: list[Failure] = field(default_factory=list)
    conflicts: dict[str, list[Source]] = field(default_factory=dict)
    _current: Source | None = None

    # -- called by plugins from their hooks ---------------------------------
    def add_method(self, cls: type) -> None:
        """Register a method estimator class (a ``FeatureExtractor`` subclass)."""
        from featurekit.method import check_method_class

        check_method_class(cls)
        self._add(self.methods, cls.name, "method",
                  MethodInfo(cls.name, cls.family, cls, self._source()))

    def add_backbone(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        modality: str = "image",
        min_input_size: int = 1,
        pretrained: tuple[str, ...] = (),
        description: str = "",
    ) -> None:
        """Register a backbone factory under ``name`` (see :class:`BackboneInfo`)."""
        if modality not in ("image", "tabular", "audio"):
            raise PluginError(f"backbone {name!r}: modality must be 'image', 'tabular' or "
                              f"'audio'; got {modality!r}")
        if not callable(factory):
            raise PluginError(f"backbone {name!r}: the factory must be callable; "
                              f"got {type(factory).__name__}")
        info = BackboneInfo(name, factory, modality, int(min_input_size), tuple(pretrained),
                            description, self._source())
        self._add(self.backbones, name, "backbone", info)

    def add_augmentation(self, name: str, factory: Callable[..., Any], *,
                         modality: str = "image", description: str = "") -> None:
        """Register an augmentation factory under ``name`` (see :class:`AugmentationInfo`)."""
        if modality not in ("image", "tabular", "audio"):
            raise PluginError(f"augmentation {name!r}: modality must be 'image', 'tabular' or "
                              f"'audio'; got {modality!r}")
        if not callable(factory):
            raise PluginError(f"augmentation {name!r}: the factory must be callable; "
                              f"got {type(factory).__name__}")
        info = AugmentationInfo(name, factory, modality, description, self._source())
        self._add(self.augmentations, name, "augmentation", info)

    # -- internals -----------------------------------------------------------
    def _source(self) -> Source:
        return self._current or Source("<runtime>", "", "<runtime>")

    def _add(self, table: dict, name: str, kind: str, info: Any) -> None:
        if name in table:
            first = table[name].source
            self.conflicts.setdefault(f"{kind}:{name}", [first]).append(info.source)
            # Recorded rather than raised, so the plugin's other names still register.
            error = DuplicateNameError(
                f"{kind} name {name!r} is registered by both {first} and {info.source}; "
                f"uninstall one of the two packages (pip uninstall {info.source.distribution})")
            self.failures.append(Failure(info.source.plugin, info.source.distribution,
                                         f"{type(error).__name__}: {error}"))
            return
        table[name] = info

    def _check_conflict(self, kind: str, name: str) -> None:
        if f"{kind}:{name}" in self.conflicts:
            both = " and ".join(str(s) for s in self.conflicts[f"{kind}:{name}"])
            raise DuplicateNameError(f"{kind} {name!r} is registered by {both}; uninstall one")

    def method(self, name: str) -> MethodInfo:
        key = name.lower()
        self._check_conflict("method", key)
        if key not in self.methods:
            raise UnknownNameError(_unknown("method", name, self.methods))
        return self.methods[key]

    def backbone(self, name: str) -> BackboneInfo:
        self._check_conflict("backbone", name)
        if name not in self.backbones:
            raise UnknownNameError(_unknown("backbone", name, self.backbones))
        return self.backbones[name]

    def augmentation(self, name: str) -> AugmentationInfo:
        self._check_conflict("augmentation", name)
        if name not in self.augmentations:
            raise UnknownNameError(_unknown("augmentation", name, self.augmentations))
        return self.augmentations[name]


def _unknown(kind: str, name: str, known: dict) -> str:
    close = difflib.get_close_matches(name.lower(), list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return (f"no {kind} named {name!r} is installed.{hint} "
            f"Installed: {', '.join(sorted(known)) or 'none'} (see `featurekit plugins`).")


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with featurekit's hook specifications."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


_runtime_plugins: list[tuple[object, str]] = []


def _load_entry_points(pm: pluggy.PluginManager, failures: list[Failure],
                       notices: list[Failure]) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "<unknown>"
        version = ep.dist.version if ep.dist is not None else ""
        try:
            plugin = ep.load()
            pm.register(plugin, name=f"{dist}:{ep.name}")
        except Exception as exc:  # one bad plugin must not stop the others
            failures.append(Failure(ep.name, dist, f"{type(exc).__name__}: {exc}"))
            continue
        source = Source(dist, version, ep.name, getattr(plugin, "FEATUREKIT_API_VERSION", None))
        problem = api_mismatch(source)
        if problem:
            notices.append(Failure(ep.name, dist, problem))
        sources[f"{dist}:{ep.name}"] = source
    return sources


def api_mismatch(source: Source) -> str | None:
    """What is wrong with the plugin API version ``source`` declares, if anything."""
    from featurekit import API_VERSION as ours
    from featurekit import __version__

    api = source.api
    if api is None or api == ours:
        return None
    if not isinstance(api, int) or isinstance(api, bool) or api < 1:
        return (f"declares FEATUREKIT_API_VERSION = {api!r}, which must be a positive int; "
                f"featurekit {__version__} provides API {ours}")
    fix = (f"upgrade featurekit to one providing API {api}" if api > ours else
           f"upgrade {source.distribution}, or install a featurekit that provides API {api}")
    return (f"is written for featurekit plugin API {api}, but featurekit {__version__} "
            f"provides API {ours}; it may fail in use: {fix}")


def _call_each(host: Registry, hook_name: str, sources: dict[str, Source], **kwargs) -> None:
    """Call every implementation of ``hook_name`` on its own, recording failures."""
    hook = getattr(host.plugin_manager.hook, hook_name)
    for impl in hook.get_hookimpls():  # oldest registration first
        source = sources.get(impl.plugin_name, Source(impl.plugin_name, "", impl.plugin_name))
        host._current = source
        try:
            impl.function(**kwargs)
        except Exception as exc:
            host.failures.append(Failure(source.plugin, source.distribution,
                                         f"{hook_name}: {type(exc).__name__}: {exc}"))
        finally:
            host._current = None


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """Discover the installed plugins once and return what they registered."""
    failures: list[Failure] = []
    notices: list[Failure] = []
    pm = make_plugin_manager()
    sources = _load_entry_points(pm, failures, notices)
    for plugin, name in _runtime_plugins:
        pm.register(plugin, name=name)
        sources[name] = Source("<runtime>", "", name,
                               getattr(plugin, "FEATUREKIT_API_VERSION", None))
        if api_mismatch(sources[name]):
            notices.append(Failure(name, "<runtime>", api_mismatch(sources[name])))
    registry = Registry(pm, failures=failures, notices=notices)
    _call_each(registry, "featurekit_register_backbones", sources, registry=registry)
    _call_each(registry, "featurekit_register_augmentations", sources, registry=registry)
    _call_each(registry, "featurekit_register_methods", sources, registry=registry)
    for failure in registry.failures:
        warnings.warn(f"featurekit plugin {failure.plugin!r} from package "
                      f"{failure.distribution!r} failed and was skipped: {failure.error}",
                      PluginWarning, stacklevel=2)
    for notice in registry.notices:
        warnings.warn(f"featurekit plugin {notice.plugin!r} from package "
                      f"{notice.distribution!r} {notice.error}", PluginWarning, stacklevel=2)
    return registry


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object at run time (tests, notebooks) and rediscover."""
    _runtime_plugins.append((plugin, name))
    get_registry.cache_clear()


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    _runtime_plugins[:] = [(p, n) for p, n in _runtime_plugins if n != name]
    get_registry.cache_clear()


def reload_plugins() -> Registry:
    """Forget what was discovered and discover again (after installing a plugin)."""
    get_registry.cache_clear()
    return get_registry()


def create(name: str, **params: Any):
    """Build the estimator of the method registered as ``name`` with ``params``.

    >>> import featurekit
    >>> featurekit.create("simclr", backbone="small_cnn", max_epochs=1)
    SimCLR(max_epochs=1)
    """
    return get_registry().method(name).cls(**params)


def list_methods(pattern: str = "*") -> list[dict[str, str]]:
    """The installed methods (name, family, distribution, version), wildcards allowed."""
    return [
        {"name": m.name, "family": m.family, "distribution": m.distribution, "version": m.version}
        for name, m in sorted(get_registry().methods.items())
        if fnmatch.fnmatch(name, pattern)
    ]


def create_augmentation(name: str, **params: Any):
    """Build the augmentation registered as ``name``: a callable ``op(x, generator)``.

    >>> import featurekit
    >>> featurekit.create_augmentation("random_horizontal_flip", p=0.5)
    RandomHorizontalFlip(p=0.5)
    """
    return get_registry().augmentation(name).factory(**params)


def list_augmentations(pattern: str = "*") -> list[dict[str, str]]:
    """The installed augmentations (name, modality, distribution, description)."""
    return [
        {"name": name, "modality": a.modality, "distribution": a.source.distribution,
         "description": a.description}
        for name, a in sorted(get_registry().augmentations.items())
        if fnmatch.fnmatch(name, pattern)
    ]


def list_backbones(pattern: str = "*", *, pretrained: bool | None = None) -> list[dict[str, Any]]:
    """The installed backbones, wildcards allowed (``list_backbones("resnet*")``).

    Each row says which torchvision weights the backbone accepts; pass
    ``pretrained=True`` to keep only backbones that have some.
    """
    rows = []
    for name, b in sorted(get_registry().backbones.items()):
        if not fnmatch.fnmatch(name, pattern):
            continue
        if pretrained is not None and bool(b.pretrained) != pretrained:
            continue
        rows.append({"name": name, "modality": b.modality, "pretrained": list(b.pretrained),
                     "min_input_size": b.min_input_size, "distribution": b.source.distribution,
                     "description": b.description})
    return rows
