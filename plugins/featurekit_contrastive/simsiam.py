"""SimSiam: a Siamese network with a predictor and a stop-gradient (Chen & He 2021)."""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from featurekit.base import FeatureExtractor, store_params
from featurekit.data.augment import FeatureCorruption, image_recipe
from featurekit.method import OptimizerSpec
from featurekit_contrastive.heads import projection_head, simsiam_projector
from featurekit_contrastive.losses import negative_cosine
from featurekit_contrastive.views import use_blur


class SimSiam(FeatureExtractor):
    """SimSiam: each view predicts the other's projection, without negatives.

    Backbone f, a 3-layer projector (BN on every layer, output included) and a
    bottleneck predictor h are trained with the symmetric negative cosine
    ``D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2``. There are no
    negatives and no momentum encoder; the stop-gradient alone prevents
    collapse. ``transform`` returns the backbone's features.

    Collapse monitor: each step logs ``output_std``, the per-dimension standard
    deviation of the L2-normalized projections z over the batch, averaged over
    dimensions (about 1/sqrt(d) when healthy, 0 when collapsed; Sec. 4.1 of the
    paper), so ``history_["output_std"]`` holds its per-epoch means. If the
    last epoch's value is below 0.1/sqrt(d), ``fit`` warns.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory returning an ``nn.Module``.
    projection_dim : int or None, default=None
        Width d of the projector (all layers) and of the predictor's output.
        The paper uses 2048 for a 2048-d ResNet-50; None uses the backbone's
        feature size, which keeps the heads in proportion for small backbones.
    prediction_hidden_dim : int or None, default=None
        Bottleneck of the predictor; None uses d / 4 (the paper's 512 for 2048).
    crop_min_scale : float, default=0.2
        Smallest area fraction of the random resized crop (the paper's value).
    blur : "auto" or bool, default="auto"
        Gaussian blur with p=0.5 (the paper's). "auto" turns it off for images
        of 32 px or less (as the paper's CIFAR-10 experiments do).
    corruption_rate : float, default=0.6
        For tabular input, the fraction of features replaced by another row's
        values in each view (SCARF, Bahri et al. 2022), in place of image augmentations.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default (the paper's): SGD with momentum 0.9, lr 0.05 x
        batch_size / 256, weight decay 1e-4, cosine schedule for the backbone
        and projector; the predictor keeps a fixed learning rate.

    Attributes
    ----------
    backbone_ : nn.Module
        The trained backbone.
    modules_ : nn.ModuleDict
        ``backbone``, ``projector`` and ``predictor``.
    history_ : dict of list
        Per-epoch loss, ``output_std``, learning rate, time (and kNN accuracy
        with ``eval_set``).

    References
    ----------
    X. Chen, K. He. Exploring Simple Siamese Representation Learning. CVPR 2021.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_contrastive import SimSiam
    >>> X, _ = load_digits(return_X_y=True)
    >>> SimSiam("mlp", max_epochs=1, batch_size=64, random_state=0).fit_transform(X).shape
    (1797, 256)
    """

    name = "simsiam"
    family = "contrastive"
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "projection_dim": [Interval(Integral, 1, None, closed="left"), None],
        "prediction_hidden_dim": [Interval(Integral, 1, None, closed="left"), None],
        "crop_min_scale": [Interval(Real, 0, 1, closed="right")],
        "blur": [StrOptions({"auto"}), "boolean"],
        "corruption_rate": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, backbone="small_cnn", *, projection_dim=None, prediction_hidden_dim=None,
                 crop_min_scale=0.2, blur="auto", corruption_rate=0.6, backbone_kwargs=None,
                 weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    def fit(self, X, y=None):
        """Learn features from ``X`` (``y`` is ignored); warn if the projections collapsed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            Tabular rows, or images as described in :mod:`featurekit.data.inputs`.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        super().fit(X, y)
        stds = self.history_.get("output_std")
        dim = self._dim(self.backbone_config_["feature_dim"])
        if stds and stds[-1] < 0.1 / math.sqrt(dim):
            warnings.warn(
                f"SimSiam's representation collapsed: the output std of the normalized "
                f"projections is {stds[-1]:.3g} (about {1 / math.sqrt(dim):.3g} when healthy). "
                "Try a lower lr=, a larger batch_size= or weight_decay=, or check the views "
                "differ enough (crop_min_scale=, corruption_rate=)", UserWarning, stacklevel=2)
        return self

    def _dim(self, backbone_dim: int) -> int:
        return self.projection_dim or backbone_dim

    def build(self, spec):
        dim = self._dim(spec.backbone_dim)
        hidden = self.prediction_hidden_dim or max(1, dim // 4)
        return nn.ModuleDict({
            "backbone": spec.make_backbone(),
            "projector": simsiam_projector(spec.backbone_dim, dim),
            "predictor": projection_head(dim, hidden, dim),
        })

    def views(self, spec):
        if spec.modality == "tabular":
            return [FeatureCorruption(self.corruption_rate)] * 2
        size = spec.input_shape[-1]
        blur = use_blur(self.blur, size)
        recipe = image_recipe(size, strength=1.0, blur=blur, min_scale=self.crop_min_scale)
        return [recipe, recipe]

    def optimizers(self, modules):
        encoder = [*modules["backbone"].parameters(), *modules["projector"].parameters()]
        groups = [{"params": encoder},
                  {"params": list(modules["predictor"].parameters()), "fixed_lr": True}]
        return {"model": OptimizerSpec(groups, "sgd", lr=0.05, weight_decay=1e-4, momentum=0.9,
                                       lr_batch_scaling=True)}

    def training_step(self, modules, batch, ctx):
        z1, z2 = (modules["projector"](modules["backbone"](v)) for v in batch.views)
        p1, p2 = modules["predictor"](z1), modules["predictor"](z2)
        loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2
        ctx.optimize("model", loss)
        with torch.no_grad():
            ctx.log(output_std=F.normalize(z1.float(), dim=1).std(dim=0).mean())

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}
