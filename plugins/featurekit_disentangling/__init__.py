"""Built-in disentangling methods: ContentStyle (content vs style parts) and beta-VAE.

ContentStyle learns an instance-normalized content encoder, a global style
encoder and an AdaIN decoder; ``transform`` gives the parts ``content`` and
``style`` and ``recombine`` draws one sample's content in another's style,
optionally weakly supervised by ``fit(X, groups=...)``, on images or on audio
(log-mel spectrograms, 1-D networks in ``audio_networks``). BetaVAE is the
reconstructive family's VAE with beta > 1 and a per-dimension KL in
``history_``. The plugin also registers the ``content_encoder`` backbone.
See ``docs/disentangling.md``.
"""

from __future__ import annotations

from featurekit.hookspecs import hookimpl
from featurekit_disentangling.beta_vae import BetaVAE
from featurekit_disentangling.content_style import ContentStyle
from featurekit_disentangling.networks import content_encoder

#: The featurekit plugin API this plugin is written for (see docs/plugins.md).
FEATUREKIT_API_VERSION = 1

__all__ = ["BetaVAE", "ContentStyle"]


@hookimpl
def featurekit_register_methods(registry) -> None:
    for cls in (ContentStyle, BetaVAE):
        registry.add_method(cls)


@hookimpl
def featurekit_register_backbones(registry) -> None:
    registry.add_backbone(
        "content_encoder", content_encoder, modality="image", min_input_size=4, pretrained=(),
        description="ContentStyle's content encoder: conv-InstanceNorm(no affine)-ReLU blocks "
                    "(w, 2w, 4w; strides 1, 2, 2); 16w features (a 2x2 grid pool).")
