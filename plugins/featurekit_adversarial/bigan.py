"""BiGAN / ALI: adversarial feature learning with an encoder (Donahue et al. 2017;
Dumoulin et al. 2017)."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from featurekit.base import FeatureExtractor, store_params
from featurekit.exceptions import ParameterError
from featurekit.method import OptimizerSpec
from featurekit_adversarial.discriminators import JointDiscriminator, with_spectral_norm
from featurekit_adversarial.generators import LatentGenerator, Standardize
from featurekit_adversarial.losses import LOSSES, adversarial_loss, discriminator_loss

#: The modules the "generator" optimizer trains: the encoder E and the generator G.
ENCODER_GENERATOR = ("backbone", "to_latent", "generator")


class BiGAN(FeatureExtractor):
    """BiGAN (ALI): a generator G(z), an encoder E(x) and a joint discriminator D(x, z).

    D learns to tell pairs (x, E(x)) of a real image and its code from pairs
    (G(z), z) of a generated image and the code it came from; G and E learn
    together to fool it. At the optimum E inverts G, so E(x) is a feature
    vector learnt without labels. The discriminator's update, then the
    generator and encoder's, alternate through ``ctx.optimize``.

    E is the backbone followed by a linear layer to the ``n_components``
    codes; ``transform`` returns E(x). G is a DCGAN-style generator and D an
    image path (4x4 stride-2 convolutions) and a latent path joined by
    linear layers, with dropout 0.2 as ALI's. ``sample`` draws images G(z) with z ~ N(0, I);
    ``inverse_transform`` decodes codes with G.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        The encoder's backbone: a registered backbone name or a factory.
    n_components : int, default=50
        Size of the code z: the number of features (the paper's 50 for MNIST).
    loss : {"nonsaturating", "lsgan"}, default="nonsaturating"
        The adversarial loss: the original GAN's, with the non-saturating
        generator loss, or the least-squares loss (Mao et al. 2017).
    spectral_norm : bool, default=False
        Spectral normalization (Miyato et al. 2018) of every layer of D, for
        stability; the papers predate it.
    generator_width : int, default=128
        Channels of G's first feature map (halved at each upsampling).
    discriminator_width : int, default=64
        Channels of D's first convolution (doubled per layer, at most 8x).
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Defaults: ``batch_size=128`` (the paper's), ``max_epochs=10`` (GAN
        papers train for hundreds). Optimizers: Adam, lr 2e-4, betas (0.5,
        0.999), weight decay 2.5e-5 on all parameters (BiGAN's decay spares
        biases and batch-norm scales), constant for the first half of
        training then linear to 0 (BiGAN decays exponentially to 2e-6).

    Attributes
    ----------
    modules_ : nn.ModuleDict
        ``backbone`` and ``to_latent`` (E), ``generator`` (G),
        ``discriminator`` (D) and ``pixels`` (to and from model space).
    history_ : dict of list
        Per epoch: ``loss_discriminator``, ``loss_generator`` (G and E's),
        the learning rate and the time.

    See Also
    --------
    CycleGAN : unpaired translation between two image domains.

    References
    ----------
    J. Donahue, P. Kraehenbuehl, T. Darrell. Adversarial Feature Learning. ICLR 2017.

    V. Dumoulin, I. Belghazi, B. Poole, O. Mastropietro, A. Lamb, M. Arjovsky,
    A. Courville. Adversarially Learned Inference. ICLR 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_adversarial import BiGAN
    >>> X = load_digits().images.astype("float32") / 16
    >>> gan = BiGAN(n_components=8, backbone_kwargs={"width": 4}, generator_width=16,
    ...             discriminator_width=8, max_epochs=1, random_state=0, verbose=0).fit(X)
    >>> gan.transform(X).shape, gan.sample(3, random_state=0).shape
    ((1797, 8), (3, 8, 8))
    """

    name = "bigan"
    family = "adversarial"
    modalities = ("image",)
    verbs = ("sample", "inverse_transform")
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "loss": [StrOptions(set(LOSSES))],
        "spectral_norm": ["boolean"],
        "generator_width": [Interval(Integral, 1, None, closed="left")],
        "discriminator_width": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, backbone="small_cnn", *, n_components=50, loss="nonsaturating",
                 spectral_norm=False, generator_width=128, discriminator_width=64,
                 backbone_kwargs=None, weights=None, part=None, max_epochs=10, batch_size=128,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    # -- the method contract ---------------------------------------------------------
    def build(self, spec):
        shape = tuple(spec.input_shape)
        discriminator = JointDiscriminator(shape, self.n_components, self.discriminator_width)
        if self.spectral_norm:
            discriminator = with_spectral_norm(discriminator)
        return nn.ModuleDict({
            "backbone": spec.make_backbone(),
            "to_latent": nn.Linear(spec.backbone_dim, self.n_components),
            "generator": LatentGenerator(self.n_components, shape, self.generator_width),
            "discriminator": discriminator,
            "pixels": Standardize(self.input_spec_.mean, self.input_spec_.std),
        })

    def outputs(self, spec):
        return {"features": self.n_components}

    def optimizers(self, modules):
        adam = {"optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999), "weight_decay": 2.5e-5,
                "schedule": "constant_then_linear", "decay": 0.5}
        ge = [p for k in ENCODER_GENERATOR for p in modules[k].parameters()]
        return {"discriminator": OptimizerSpec(modules["discriminator"].parameters(), **adam),
                "generator": OptimizerSpec(ge, **adam)}

    def training_step(self, modules, batch, ctx):
        x = batch.x
        z = torch.randn(len(x), self.n_components, device=x.device)
        code = self._encode(modules, x)
        fake = modules["pixels"](modules["generator"](z))
        d = modules["discriminator"]
        d_loss = discriminator_loss(d(x, code.detach()), d(fake.detach(), z), self.loss)
        ctx.optimize("discriminator", d_loss)
        d.requires_grad_(False)  # G and E's update needs no gradient in D's parameters
        try:
            ge_loss = (adversarial_loss(d(fake, z), True, self.loss)
                       + adversarial_loss(d(x, code), False, self.loss))
        finally:
            d.requires_grad_(True)
        ctx.optimize("generator", ge_loss)

    def embed(self, modules, x):
        return {"features": self._encode(modules, x)}

    # -- verbs -----------------------------------------------------------------------
    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """Draw new images: z ~ N(0, I), then G(z).

        Parameters
        ----------
        n_samples : int, default=1
            Number of images.
        random_state : int, RandomState instance or None, default=None
            Seed of the codes drawn; an int gives the same images every call.

        Returns
        -------
        X : ndarray
            ``n_samples`` images shaped, scaled and typed like those given to ``fit``.
        """
        check_is_fitted(self, "modules_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ParameterError(f"n_samples must be an int >= 1. Got {n_samples!r} instead.")
        z = check_random_state(random_state).standard_normal((n_samples, self.n_components))
        return self._decode_rows(z.astype(np.float32), self._decode,
                                 n_columns=self.n_components, verb="sample")

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Images G(z) for codes z (such as ``transform``'s E(x)).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes.

        Returns
        -------
        X_original : ndarray
            Images shaped, scaled and typed like those given to ``fit``.
        """
        return self._decode_rows(X, self._decode, n_columns=self.n_components,
                                 verb="inverse_transform")

    # -- internals -------------------------------------------------------------------
    @staticmethod
    def _encode(modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return modules["to_latent"](modules["backbone"](x))

    @staticmethod
    def _decode(modules: nn.ModuleDict, z: torch.Tensor) -> torch.Tensor:
        return modules["pixels"](modules["generator"](z).float())
