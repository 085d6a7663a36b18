"""featurekit: learn and extract deep features behind scikit-learn's fit/transform.

Method estimators (``featurekit.SimCLR``, ``featurekit.Supervised``, ...) come
from plugins and are resolved lazily by name, so importing featurekit stays
cheap and a broken plugin never breaks ``import featurekit``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
#: The plugin API this featurekit provides: the hooks (``featurekit.hookspecs``),
#: the method contract (``featurekit.method``) and the conformance kit. It grows
#: by one with any change that can break a plugin. A plugin module declares the
#: version it was written for as ``FEATUREKIT_API_VERSION = 1``; another number
#: gets a warning naming the fix (docs/plugins.md).
API_VERSION = 1

_CORE = {
    "create": "featurekit.registry",
    "list_methods": "featurekit.registry",
    "list_backbones": "featurekit.registry",
    "create_augmentation": "featurekit.registry",
    "list_augmentations": "featurekit.registry",
    "reload_plugins": "featurekit.registry",
    "FeatureExtractor": "featurekit.base",
    "load": "featurekit.persistence",
    "hookimpl": "featurekit.hookspecs",
    "FeatureStore": "featurekit.store",
    "extract": "featurekit.extraction",
    "FaissKMeans": "featurekit.cluster",
    "FeatureIndex": "featurekit.index",
    "FaissKNeighborsClassifier": "featurekit.neighbors",
    "FaissKNeighborsTransformer": "featurekit.neighbors",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _CORE:
        return getattr(importlib.import_module(_CORE[name]), name)
    if name[:1].isupper():
        from featurekit.registry import get_registry

        for info in get_registry().methods.values():
            if info.cls.__name__ == name:
                return info.cls
    raise AttributeError(f"module 'featurekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_CORE])
