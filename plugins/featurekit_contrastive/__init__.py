"""Built-in contrastive and Siamese methods: SimCLR, MoCo v2, SimSiam and BYOL."""

from __future__ import annotations

from featurekit.hookspecs import hookimpl
from featurekit_contrastive.byol import BYOL
from featurekit_contrastive.moco import MoCoV2
from featurekit_contrastive.simclr import SimCLR
from featurekit_contrastive.simsiam import SimSiam

#: The featurekit plugin API this plugin is written for (see docs/plugins.md).
FEATUREKIT_API_VERSION = 1

__all__ = ["BYOL", "MoCoV2", "SimCLR", "SimSiam"]


@hookimpl
def featurekit_register_methods(registry) -> None:
    for cls in (SimCLR, MoCoV2, SimSiam, BYOL):
        registry.add_method(cls)
