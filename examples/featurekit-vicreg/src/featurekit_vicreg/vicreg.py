"""VICReg: variance-invariance-covariance regularization (Bardes, Ponce & LeCun 2022)."""

from __future__ import annotations

from numbers import Integral, Real

from torch import nn

import featurekit
from featurekit.base import FeatureExtractor, store_params
from featurekit.method import Interval, OptimizerSpec, StrOptions
from featurekit_vicreg.loss import vicreg_loss

#: ``blur="auto"`` blurs only images larger than this side: at CIFAR-10 size
#: and below, a blur erases most of the detail.
SMALL_IMAGE_NO_BLUR = 32


def expander(in_dim: int, dim: int, n_layers: int) -> nn.Sequential:
    """VICReg's expander: ``n_layers`` linear layers of ``dim`` units.

    Every layer but the last is followed by batch norm and ReLU; the last
    is a plain linear map without bias (the paper's Sec. 4.2 and the
    authors' ``Projector``, there 8192-8192-8192).

    Examples
    --------
    >>> import torch
    >>> expander(64, 32, 3)(torch.randn(4, 64)).shape
    torch.Size([4, 32])
    """
    layers: list[nn.Module] = []
    for i in range(n_layers - 1):
        layers += [nn.Linear(in_dim if i == 0 else dim, dim), nn.BatchNorm1d(dim),
                   nn.ReLU(inplace=True)]
    layers.append(nn.Linear(in_dim if n_layers == 1 else dim, dim, bias=False))
    return nn.Sequential(*layers)


class VICReg(FeatureExtractor):
    """VICReg: invariance between views, with variance and covariance regularizers.

    Two augmented views of each sample go through the same backbone and an
    expander MLP. The loss pulls the two embeddings together (invariance,
    a mean squared error), keeps the standard deviation of every embedding
    dimension over the batch above 1 (variance, a hinge) and decorrelates
    the dimensions (covariance, the squared off-diagonal covariances); the
    last two terms prevent collapse without negatives, a momentum encoder,
    a predictor or a stop-gradient. ``transform`` returns the backbone's
    features (the representation), not the expander's output.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory returning an ``nn.Module``.
    sim_coeff : float, default=25.0
        Weight lambda of the invariance term (the paper's).
    std_coeff : float, default=25.0
        Weight mu of the variance term (the paper's).
    cov_coeff : float, default=1.0
        Weight nu of the covariance term (the paper's).
    expander_dim : int, default=512
        Width of every expander layer. The paper uses 8192 (four times
        ResNet-50's 2048 features) and finds wider better; 512 keeps a CPU
        step cheap, since the covariance term costs ``O(batch * dim^2)``.
        Raise it on a GPU. A batch of n samples spans at most n - 1
        dimensions, so beyond ``batch_size`` dimensions the variance and
        covariance terms cannot both reach 0 (the paper: 8192 dimensions for
        batches of 2048).
    expander_layers : int, default=3
        Number of linear layers in the expander (the paper's 3).
    crop_min_scale : float, default=0.2
        Smallest area fraction of the random resized crop (paper: 0.08 for
        224 px ImageNet; 0.2 keeps enough of a small image).
    blur : "auto" or bool, default="auto"
        Gaussian blur on the first view. "auto" turns it off for images of
        32 px or less, where a blur erases most of the detail.
    corruption_rate : float, default=0.6
        For tabular input, the fraction of features replaced by another row's
        values in each view (SCARF, Bahri et al. 2022), in place of image augmentations.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: AdamW, lr 1e-3, weight decay 1e-6, 10% warmup then
        cosine. The paper uses LARS with lr 0.2 x batch_size / 256, weight
        decay 1e-6 and 10 warmup epochs for batches of 2048; featurekit offers
        SGD, Adam and AdamW, and AdamW's per-parameter step size plays the
        part of LARS's per-layer trust ratio, converges reliably at the small
        batches of CPU runs, and is indifferent to the loss's scale (about 25
        at the start with the default coefficients).

    Attributes
    ----------
    backbone_ : nn.Module
        The trained backbone.
    modules_ : nn.ModuleDict
        ``backbone`` and ``expander``.
    history_ : dict of list
        Per-epoch loss, its unweighted ``invariance``, ``variance`` and
        ``covariance`` terms, learning rate and time (and kNN accuracy with
        ``eval_set``).

    Notes
    -----
    The views follow the authors' code (``augmentations.py``) as closely as
    featurekit's ``image_recipe`` allows: crop, flip, colour jitter with
    p=0.8, grayscale with p=0.2 on both views; blur on the first view and
    solarization with p=0.2 on the second. Two differences: the recipe blurs
    with p=0.5 (the authors: 1.0 on the first view, 0.1 on the second, here
    0) and jitters saturation by 0.4 (the authors: 0.2).

    The loss uses the normalisations of the authors' code, under which the
    default coefficients were tuned (see :func:`featurekit_vicreg.loss.vicreg_loss`).

    References
    ----------
    A. Bardes, J. Ponce, Y. LeCun. VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning. ICLR 2022.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_vicreg import VICReg
    >>> X, _ = load_digits(return_X_y=True)
    >>> VICReg("mlp", max_epochs=1, batch_size=64, random_state=0).fit_transform(X).shape
    (1797, 256)
    """

    name = "vicreg"
    family = "contrastive"
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "sim_coeff": [Interval(Real, 0, None, closed="left")],
        "std_coeff": [Interval(Real, 0, None, closed="left")],
        "cov_coeff": [Interval(Real, 0, None, closed="left")],
        "expander_dim": [Interval(Integral, 1, None, closed="left")],
        "expander_layers": [Interval(Integral, 1, None, closed="left")],
        "crop_min_scale": [Interval(Real, 0, 1, closed="right")],
        "blur": [StrOptions({"auto"}), "boolean"],
        "corruption_rate": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, backbone="small_cnn", *, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0,
                 expander_dim=512, expander_layers=3, crop_min_scale=0.2, blur="auto",
                 corruption_rate=0.6, backbone_kwargs=None, weights=None, part=None,
                 max_epochs=10, batch_size=256, inference_batch_size=256, optimizer="auto",
                 lr="auto", weight_decay="auto", gradient_clip=None, device="auto",
                 precision="auto", num_workers=0, random_state=None, verbose=1,
                 checkpoint_dir=None, resume="auto", warm_start=False, eval_set=None,
                 n_iter_no_change=None, image_size=None, channels="auto", scale="auto",
                 image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        return nn.ModuleDict({
            "backbone": spec.make_backbone(),
            "expander": expander(spec.backbone_dim, self.expander_dim, self.expander_layers),
        })

    def views(self, spec):
        if spec.modality == "tabular":
            corrupt = featurekit.create_augmentation("feature_corruption",
                                                     rate=self.corruption_rate)
            return [corrupt, corrupt]
        size = spec.input_shape[-1]
        blur = size > SMALL_IMAGE_NO_BLUR if self.blur == "auto" else bool(self.blur)
        common = dict(size=size, strength=1.0, min_scale=self.crop_min_scale)
        return [featurekit.create_augmentation("image_recipe", blur=blur, solarize_p=0.0,
                                               **common),
                featurekit.create_augmentation("image_recipe", blur=False, solarize_p=0.2,
                                               **common)]

    def optimizers(self, modules):
        return {"model": OptimizerSpec(modules.parameters(), "adamw", lr=1e-3,
                                       weight_decay=1e-6, warmup=0.1)}

    def training_step(self, modules, batch, ctx):
        z1, z2 = (modules["expander"](modules["backbone"](v)) for v in batch.views)
        out = vicreg_loss(z1, z2, self.sim_coeff, self.std_coeff, self.cov_coeff,
                          all_gather=ctx.all_gather)
        ctx.optimize("model", out.loss)
        ctx.log(invariance=out.invariance.detach(), variance=out.variance.detach(),
                covariance=out.covariance.detach())

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}
