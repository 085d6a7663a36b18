"""Built-in supervised methods: ``Supervised`` (fine-tuning with labels) and
``Pretrained`` (a frozen backbone as it is)."""

from __future__ import annotations

from featurekit.hookspecs import hookimpl
from featurekit_supervised.pretrained import Pretrained
from featurekit_supervised.supervised import Supervised

#: The featurekit plugin API this plugin is written for (see docs/plugins.md).
FEATUREKIT_API_VERSION = 1

__all__ = ["Pretrained", "Supervised"]


@hookimpl
def featurekit_register_methods(registry) -> None:
    registry.add_method(Supervised)
    registry.add_method(Pretrained)
