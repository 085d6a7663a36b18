"""AutoEncoder: features from a bottleneck trained to rebuild its input."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from featurekit.base import FeatureExtractor, store_params
from featurekit.method import Interval, OptimizerSpec
from featurekit_reconstructive.decoders import make_decoder


class AutoEncoder(FeatureExtractor):
    """An autoencoder: encode to ``n_components`` numbers, decode, compare with the input.

    The encoder is the backbone followed by a linear bottleneck of
    ``n_components`` units; the decoder mirrors it (an upsampling CNN for
    images, an MLP for tables, see ``featurekit_reconstructive.decoders``).
    Both are trained to minimize the mean squared error between the input and
    its reconstruction, in the normalized space the backbone sees.
    ``transform`` returns the bottleneck, and ``inverse_transform`` decodes
    it, like PCA's.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name (``featurekit.list_backbones()``) or a
        factory; use ``"mlp"`` for tabular data.
    n_components : int, default=32
        Size of the bottleneck: the number of features.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: AdamW, lr 1e-3, no weight decay, cosine decay.

    Attributes
    ----------
    modules_ : nn.ModuleDict
        ``backbone``, ``bottleneck`` (Linear) and ``decoder``.
    history_ : dict of list
        Per-epoch reconstruction loss, learning rate and time.

    See Also
    --------
    DenoisingAutoEncoder : the same, trained on corrupted inputs.
    VAE : a probabilistic autoencoder that can also sample.

    References
    ----------
    G. E. Hinton, R. R. Salakhutdinov. Reducing the Dimensionality of Data with
    Neural Networks. Science 313, 2006.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_reconstructive import AutoEncoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> ae = AutoEncoder("mlp", n_components=8, max_epochs=2, random_state=0, verbose=0)
    >>> Z = ae.fit_transform(X)
    >>> Z.shape, ae.inverse_transform(Z).shape, ae.reconstruct(X[:5]).shape
    ((1797, 8), (1797, 64), (5, 64))
    """

    name = "autoencoder"
    family = "reconstructive"
    verbs = ("inverse_transform", "reconstruct")
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, backbone="small_cnn", *, n_components=32, backbone_kwargs=None,
                 weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    # -- the method contract -----------------------------------------------------------
    def build(self, spec):
        backbone = spec.make_backbone()
        return nn.ModuleDict({
            "backbone": backbone,
            "bottleneck": nn.Linear(spec.backbone_dim, self.n_components),
            "decoder": make_decoder(spec, backbone, self.n_components),
        })

    def outputs(self, spec):
        return {"features": self.n_components}

    def optimizers(self, modules):
        return {"model": OptimizerSpec(modules.parameters(), "adamw", lr=1e-3)}

    def training_step(self, modules, batch, ctx):
        # A denoising autoencoder encodes its one corrupted view; a plain one, the input.
        x = batch.views[0] if batch.views else batch.x
        rebuilt = self._rebuild(modules, x)
        ctx.optimize("model", F.mse_loss(rebuilt.float(), batch.x.float()))

    def embed(self, modules, x):
        return {"features": self._encode(modules, x)}

    def _encode(self, modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return modules["bottleneck"](modules["backbone"](x))

    def _decode(self, modules: nn.ModuleDict, z: torch.Tensor) -> torch.Tensor:
        """Latent codes -> a model-space batch of inputs."""
        return modules["decoder"](z)

    def _rebuild(self, modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        """A model-space batch encoded and decoded."""
        return self._decode(modules, self._encode(modules, x))

    # -- verbs -----------------------------------------------------------------------
    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decode features back to inputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Features, as ``transform`` returns them (or any other codes).

        Returns
        -------
        X_original : ndarray
            Inputs shaped and scaled like those given to ``fit``: images in
            their layout, uint8 for uint8 input, float32 in the input's scale
            otherwise; tabular rows in the original units (float32).
        """
        return self._decode_rows(X, self._decode, n_columns=self.n_components,
                                 verb="inverse_transform")

    def reconstruct(self, X: Any) -> np.ndarray:
        """Encode and decode ``X``: ``inverse_transform(transform(X))`` in one pass.

        Parameters
        ----------
        X : array-like or images
            Input of the same kind and shape as given to ``fit``.

        Returns
        -------
        X_rebuilt : ndarray
            Shaped and scaled like ``X`` (see :meth:`inverse_transform`).
        """
        return self._map_inputs(X, self._rebuild)
