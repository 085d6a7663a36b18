"""Built-in adversarial methods: BiGAN (ALI) feature learning and CycleGAN translation.

BiGAN learns an encoder E(x) by adversarial inference (``transform``), and
draws images (``sample``); CycleGAN learns two-way translation between two
unpaired image domains (``translate``), its generators' encoders giving the
features. The plugin also registers the ``cyclegan_encoder`` backbone,
CycleGAN's generator encoder. See ``docs/adversarial.md``.
"""

from __future__ import annotations

from featurekit.hookspecs import hookimpl
from featurekit_adversarial.bigan import BiGAN
from featurekit_adversarial.cyclegan import CycleGAN
from featurekit_adversarial.generators import cyclegan_encoder

#: The featurekit plugin API this plugin is written for (see docs/plugins.md).
FEATUREKIT_API_VERSION = 1

__all__ = ["BiGAN", "CycleGAN"]


@hookimpl
def featurekit_register_methods(registry) -> None:
    for cls in (BiGAN, CycleGAN):
        registry.add_method(cls)


@hookimpl
def featurekit_register_backbones(registry) -> None:
    registry.add_backbone(
        "cyclegan_encoder", cyclegan_encoder, modality="image", min_input_size=8, pretrained=(),
        description="CycleGAN's generator encoder (c7s1-k, d2k, d4k, residual blocks; "
                    "Zhu et al. 2017); 4k-d pooled features.")
