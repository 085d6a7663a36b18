"""Built-in contrastive methods (SimCLR; MoCo v2, SimSiam and BYOL follow)."""

from __future__ import annotations

from featurekit.hookspecs import hookimpl
from featurekit_contrastive.simclr import SimCLR

__all__ = ["SimCLR"]


@hookimpl
def featurekit_register_methods(registry) -> None:
    registry.add_method(SimCLR)
