"""beta-VAE in the disentangling family, with a per-dimension KL in ``history_``
(Higgins et al. 2017), built on the reconstructive family's VAE."""

from __future__ import annotations

from featurekit.base import store_params
from featurekit_reconstructive.vae import VAE


class BetaVAE(VAE):
    """A beta-VAE: the VAE's ELBO with its KL term weighted by ``beta > 1``.

    Higgins et al. (2017) weight ``KL(q(z | x) || N(0, I))`` by ``beta > 1``,
    which presses the posterior towards the factorized prior and so towards
    latent variables that each follow one factor of variation, at some cost
    in reconstruction. Everything else is :class:`featurekit_reconstructive.VAE`:
    the encoder (backbone, then a linear layer to mean and log-variance), the
    decoder, ``transform`` (the posterior mean), ``inverse_transform``,
    ``reconstruct`` and ``sample``.

    The KL of a diagonal Gaussian posterior is a sum over latent dimensions;
    ``history_`` holds each term's per-epoch mean as ``kl_dim0`` ...
    ``kl_dim{n_components - 1}`` (nats per sample, summing to ``kl``). A
    dimension whose KL stays near 0 is unused (its posterior is the prior);
    the active ones are those the model encodes information in (Burgess et
    al. 2018). :meth:`kl_per_dimension` gives them as one array.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory; ``"mlp"`` for tabular data.
    n_components : int, default=10
        Number of latent variables (Higgins et al. use 10 on dSprites and
        32 on CelebA).
    beta : float, default=4.0
        Weight of the KL term (Higgins et al. report beta = 4 for dSprites
        with 10 latents; 1 is the plain VAE).
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        The decoder's distribution, as :class:`VAE`'s.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: AdamW, lr 1e-3, no weight decay, cosine decay.

    Attributes
    ----------
    history_ : dict of list
        Per epoch: ``loss`` (reconstruction + beta * KL), ``reconstruction``,
        ``kl``, ``kl_dim0`` ... (each latent dimension's KL), the learning
        rate and the time.

    See Also
    --------
    featurekit_reconstructive.VAE : the VAE this extends.
    ContentStyle : content and style parts from an AdaIN autoencoder.

    References
    ----------
    I. Higgins, L. Matthey, A. Pal, C. Burgess, X. Glorot, M. Botvinick,
    S. Mohamed, A. Lerchner. beta-VAE: Learning Basic Visual Concepts with a
    Constrained Variational Framework. ICLR 2017.

    C. P. Burgess, I. Higgins, A. Pal, L. Matthey, N. Watters, G. Desjardins,
    A. Lerchner. Understanding disentangling in beta-VAE. arXiv:1804.03599, 2018.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_disentangling import BetaVAE
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAE("mlp", n_components=3, max_epochs=2, random_state=0, verbose=0).fit(X)
    >>> vae.kl_per_dimension().shape
    (2, 3)
    """

    name = "beta_vae"
    family = "disentangling"

    def __init__(self, backbone="small_cnn", *, n_components=10, beta=4.0, likelihood="auto",
                 backbone_kwargs=None, weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    def training_step(self, modules, batch, ctx):
        reconstruction, kl_dims = self._elbo_terms(modules, batch.x)
        kl = kl_dims.sum()
        ctx.optimize("model", reconstruction + self.beta * kl)
        per_dim = kl_dims.detach().cpu().tolist()  # one transfer, not one per dimension
        ctx.log(reconstruction=reconstruction.detach(), kl=kl.detach(),
                **{f"kl_dim{i}": v for i, v in enumerate(per_dim)})

    def kl_per_dimension(self):
        """Each latent dimension's KL per epoch, from ``history_``.

        Returns
        -------
        ndarray of shape (n_epochs, n_components)
            Row ``e`` holds ``history_["kl_dim0"][e]`` ... (nats per sample).
        """
        import numpy as np
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "history_")
        columns = [self.history_.get(f"kl_dim{i}", []) for i in range(self.n_components)]
        return np.asarray(columns, dtype=np.float64).T.reshape(-1, self.n_components)
