"""DenoisingAutoEncoder: rebuild the clean input from a corrupted one (Vincent et al. 2008)."""

from __future__ import annotations

from numbers import Real

from featurekit.base import store_params
from featurekit.method import Interval
from featurekit_reconstructive.autoencoder import AutoEncoder
from featurekit_reconstructive.corruption import Corruption


class DenoisingAutoEncoder(AutoEncoder):
    """A denoising autoencoder: encode a corrupted input, decode the clean one.

    The architecture, verbs and loss are :class:`AutoEncoder`'s; only the
    encoder's input differs: each sample is corrupted afresh at every step,
    on the device, by masking noise (each pixel or column set to zero with
    probability ``mask_prob``) and additive Gaussian noise (``noise_std``).
    Images are corrupted in [0, 1] pixel units before normalization, tables
    in standardized units. ``transform``, ``inverse_transform`` and
    ``reconstruct`` use clean inputs.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory; ``"mlp"`` for tabular data.
    n_components : int, default=32
        Size of the bottleneck: the number of features.
    noise_std : float, default=0.0
        Standard deviation of the additive Gaussian noise (Vincent et al.
        2010 call it isotropic Gaussian noise). The 2008 paper uses masking
        only, hence 0.
    mask_prob : float, default=0.25
        Probability that each input dimension (a pixel in all its channels,
        or a column) is set to zero: the 2008 paper's masking noise, which it
        reports at 10 %, 25 % and 40 %.
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
    AutoEncoder : the same without corruption.

    References
    ----------
    P. Vincent, H. Larochelle, Y. Bengio, P.-A. Manzagol. Extracting and
    Composing Robust Features with Denoising Autoencoders. ICML 2008.

    P. Vincent, H. Larochelle, I. Lajoie, Y. Bengio, P.-A. Manzagol. Stacked
    Denoising Autoencoders. JMLR 11, 2010.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_reconstructive import DenoisingAutoEncoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> dae = DenoisingAutoEncoder("mlp", n_components=8, noise_std=0.1, max_epochs=2,
    ...                            random_state=0, verbose=0).fit(X)
    >>> dae.reconstruct(X[:5]).shape
    (5, 64)
    """

    name = "denoising_autoencoder"
    _parameter_constraints = {
        **AutoEncoder._parameter_constraints,
        "noise_std": [Interval(Real, 0, None, closed="left")],
        "mask_prob": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(self, backbone="small_cnn", *, n_components=32, noise_std=0.0, mask_prob=0.25,
                 backbone_kwargs=None, weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    def views(self, spec):
        return [Corruption(self.noise_std, self.mask_prob)]
