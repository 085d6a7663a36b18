"""Built-in reconstructive methods: AutoEncoder, DenoisingAutoEncoder, VAE (and beta-VAE), MAE.

Each learns features by rebuilding its input. AE, DAE and VAE decode their
features (``inverse_transform``), all four ``reconstruct`` inputs, and the VAE
draws new ones (``sample``). See ``docs/reconstructive.md``.
"""

from __future__ import annotations

from featurekit.hookspecs import hookimpl
from featurekit_reconstructive.autoencoder import AutoEncoder
from featurekit_reconstructive.denoising import DenoisingAutoEncoder
from featurekit_reconstructive.mae import MAE
from featurekit_reconstructive.vae import VAE

#: The featurekit plugin API this plugin is written for (see docs/plugins.md).
FEATUREKIT_API_VERSION = 1

__all__ = ["MAE", "VAE", "AutoEncoder", "DenoisingAutoEncoder"]


@hookimpl
def featurekit_register_methods(registry) -> None:
    for cls in (AutoEncoder, DenoisingAutoEncoder, VAE, MAE):
        registry.add_method(cls)
