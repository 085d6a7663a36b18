"""VAE: a variational autoencoder, and beta-VAE (Kingma & Welling 2014; Higgins et al. 2017)."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from featurekit.base import store_params
from featurekit.exceptions import ParameterError
from featurekit.preprocess import Normalize
from featurekit.method import Interval, StrOptions
from featurekit_reconstructive.autoencoder import AutoEncoder
from featurekit_reconstructive.decoders import make_decoder
from featurekit_reconstructive.losses import bernoulli_nll, gaussian_nll, kl_standard_normal

#: log-variances are clipped to this range so that exp() stays finite (bf16 included).
LOGVAR_RANGE = (-30.0, 20.0)


class VAE(AutoEncoder):
    """A variational autoencoder; with ``beta > 1``, a beta-VAE.

    The encoder (the backbone, then a linear layer) gives the mean and
    log-variance of a diagonal Gaussian posterior q(z | x) over
    ``n_components`` latent variables; a sample drawn with the
    reparameterization trick ``z = mu + sigma * eps`` is decoded into the
    parameters of p(x | z). Training minimizes the negative ELBO with a
    weighted KL term, ``E_q[-log p(x | z)] + beta * KL(q(z | x) || N(0, I))``,
    per sample. ``transform`` returns the posterior mean.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory; ``"mlp"`` for tabular data.
    n_components : int, default=32
        Number of latent variables: the number of features.
    beta : float, default=1.0
        Weight of the KL term: 1 is the VAE's ELBO; beta > 1 (Higgins et al.
        use 4 and more) trades reconstruction for a more factorized,
        disentangled latent space.
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        The decoder's distribution. ``"bernoulli"``: pixels in [0, 1] are
        Bernoulli means (the paper's choice for MNIST), images only.
        ``"gaussian"``: a Gaussian of unit variance in the normalized space
        the backbone sees. ``"auto"`` takes Bernoulli for images and Gaussian
        for tables.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: AdamW, lr 1e-3, no weight decay, cosine decay (the
        paper used Adagrad).

    Attributes
    ----------
    modules_ : nn.ModuleDict
        ``backbone``, ``posterior`` (Linear to mean and log-variance),
        ``decoder``, and for a Bernoulli decoder ``pixels`` (to and from model space).
    history_ : dict of list
        Per epoch: ``loss`` (the negative ELBO with beta), ``reconstruction``
        (``E_q[-log p(x | z)]``, nats per sample), ``kl`` (nats per sample),
        the learning rate and the time.

    See Also
    --------
    AutoEncoder : the deterministic version.

    References
    ----------
    D. P. Kingma, M. Welling. Auto-Encoding Variational Bayes. ICLR 2014.

    I. Higgins, L. Matthey, A. Pal, C. Burgess, X. Glorot, M. Botvinick,
    S. Mohamed, A. Lerchner. beta-VAE: Learning Basic Visual Concepts with a
    Constrained Variational Framework. ICLR 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_reconstructive import VAE
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = VAE("mlp", n_components=4, max_epochs=2, random_state=0, verbose=0).fit(X)
    >>> sorted(k for k in vae.history_ if k in ("loss", "reconstruction", "kl"))
    ['kl', 'loss', 'reconstruction']
    >>> vae.sample(3, random_state=0).shape
    (3, 64)
    """

    name = "vae"
    verbs = ("inverse_transform", "reconstruct", "sample")
    _parameter_constraints = {
        **AutoEncoder._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="left")],
        "likelihood": [StrOptions({"auto", "bernoulli", "gaussian"})],
    }

    def __init__(self, backbone="small_cnn", *, n_components=32, beta=1.0, likelihood="auto",
                 backbone_kwargs=None, weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        backbone = spec.make_backbone()
        modules = nn.ModuleDict({
            "backbone": backbone,
            "posterior": nn.Linear(spec.backbone_dim, 2 * self.n_components),
            "decoder": make_decoder(spec, backbone, self.n_components),
        })
        if self._bernoulli(spec.modality):
            modules["pixels"] = Normalize(self.input_spec_.mean, self.input_spec_.std)
        return modules

    def training_step(self, modules, batch, ctx):
        reconstruction, kl_dims = self._elbo_terms(modules, batch.x)
        kl = kl_dims.sum()
        ctx.optimize("model", reconstruction + self.beta * kl)
        ctx.log(reconstruction=reconstruction.detach(), kl=kl.detach())

    def _elbo_terms(self, modules: nn.ModuleDict, x: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean reconstruction NLL, and its mean KL per latent dimension
        (shape ``(n_components,)``; their sum is the ELBO's KL term)."""
        mu, logvar = self._posterior(modules, x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        out = modules["decoder"](z)
        if "pixels" in modules:
            target = modules["pixels"].inverse(x).clamp(0.0, 1.0)
            reconstruction = bernoulli_nll(out, target).mean()
        else:
            reconstruction = gaussian_nll(out, x).mean()
        return reconstruction, kl_standard_normal(mu, logvar, per_dimension=True).mean(dim=0)

    def _posterior(self, modules: nn.ModuleDict, x: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = modules["posterior"](modules["backbone"](x)).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def _encode(self, modules, x):
        return self._posterior(modules, x)[0]

    def _decode(self, modules, z):
        out = modules["decoder"](z)
        if "pixels" in modules:  # the Bernoulli means, in model space
            return modules["pixels"](torch.sigmoid(out.float()))
        return out

    def _bernoulli(self, modality: str) -> bool:
        if self.likelihood == "bernoulli" and modality != "image":
            raise ParameterError(
                "The 'likelihood' parameter of VAE must be 'gaussian' or 'auto' for tabular "
                "data: a Bernoulli likelihood models pixel values in [0, 1]. Got 'bernoulli' "
                "instead.")
        return self.likelihood == "bernoulli" or (self.likelihood == "auto"
                                                  and modality == "image")

    # -- verbs -----------------------------------------------------------------------
    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """Draw inputs from the model: z ~ N(0, I), decoded to the likelihood's mean.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        random_state : int, RandomState instance or None, default=None
            Seed of the latent draws; an int gives the same samples every call.

        Returns
        -------
        X : ndarray
            ``n_samples`` inputs shaped and scaled like those given to ``fit``
            (Bernoulli decoders give the pixel means, not binary draws).
        """
        check_is_fitted(self, "modules_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ParameterError(f"n_samples must be an int >= 1. Got {n_samples!r} instead.")
        z = check_random_state(random_state).standard_normal((n_samples, self.n_components))
        return self._decode_rows(z.astype(np.float32), self._decode,
                                 n_columns=self.n_components, verb="sample")
