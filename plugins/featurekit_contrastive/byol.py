"""BYOL: an online network predicts an EMA target network's projection (Grill et al. 2020)."""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from featurekit.base import FeatureExtractor, store_params
from featurekit.data.augment import (
    ColorJitter,
    Compose,
    FeatureCorruption,
    GaussianBlur,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomSolarize,
)
from featurekit.method import OptimizerSpec
from featurekit_contrastive.heads import projection_head
from featurekit_contrastive.losses import byol_loss
from featurekit_contrastive.moco import momentum_update
from featurekit_contrastive.views import use_blur


def target_momentum(base_momentum: float, progress: float) -> float:
    """BYOL's EMA rate: ``1 - (1 - base) (cos(pi progress) + 1) / 2``, from base to 1."""
    return 1 - (1 - base_momentum) * (math.cos(math.pi * progress) + 1) / 2


def byol_views(size: int, crop_min_scale: float, blur: bool) -> list[Compose]:
    """BYOL's two asymmetric image views (Grill et al. 2020, Table 6).

    Both: crop, flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p=0.8, grayscale
    p=0.2. View 1 is always blurred; view 2 is blurred with p=0.1 and
    solarized with p=0.2. ``blur=False`` leaves the blur out of both.
    """
    def view(blur_p: float, solarize_p: float) -> Compose:
        ops = [RandomResizedCrop(size, scale=(crop_min_scale, 1.0)), RandomHorizontalFlip(0.5),
               ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), RandomGrayscale(0.2)]
        if blur:
            # The paper's 23 px kernel for 224 px images: about 10% of the side, odd.
            ops.append(GaussianBlur(max(3, int(0.1 * size) // 2 * 2 + 1), (0.1, 2.0), p=blur_p))
        if solarize_p:
            ops.append(RandomSolarize(0.5, p=solarize_p))
        return Compose(ops)

    return [view(1.0, 0.0), view(0.1, 0.2)]


class BYOL(FeatureExtractor):
    """BYOL: an online network learns to predict a slow-moving target network.

    The online network (backbone, projector, predictor) predicts the target
    network's projection of the other view; the loss is the normalized MSE
    ``2 - 2 cos(p, z)``, summed over both view orders. The target (backbone
    and projector) is an exponential moving average of the online network,
    updated after each optimizer step with a rate rising from
    ``base_momentum`` to 1 on a cosine schedule. No negatives are used.
    ``transform`` returns the online backbone's features.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory returning an ``nn.Module``.
    base_momentum : float, default=0.99
        Starting EMA rate of the target. The paper uses 0.996 for 1000 epochs
        on ImageNet; with the few steps of small data sets the target would
        barely move.
    projection_dim : int, default=256
        Output size of the projector and predictor (the paper's).
    projection_hidden_dim : int or None, default=None
        Hidden size of projector and predictor; None uses twice the backbone's
        feature size (the paper's 4096 for a 2048-d ResNet-50).
    crop_min_scale : float, default=0.2
        Smallest area fraction of the random resized crop (paper: 0.08 for
        224 px ImageNet; 0.2 keeps enough of a small image).
    blur : "auto" or bool, default="auto"
        The asymmetric Gaussian blur (view 1 always, view 2 with p=0.1).
        "auto" turns it off for images of 32 px or less, where a blur erases
        most of the detail; solarization (view 2, p=0.2) stays on.
    corruption_rate : float, default=0.6
        For tabular input, the fraction of features replaced by another row's
        values in each view (SCARF, Bahri et al. 2022), in place of image augmentations.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: AdamW, lr 1e-3, weight decay 1e-6, 10% warmup then
        cosine. The paper uses LARS with lr 0.2 x batch_size / 256 and weight
        decay 1.5e-6 for batches of 4096; with the small batches of CPU runs
        Adam(W) converges more reliably.

    Attributes
    ----------
    backbone_ : nn.Module
        The trained online backbone.
    modules_ : nn.ModuleDict
        ``backbone``, ``projector``, ``predictor`` and the EMA targets
        ``target_backbone`` and ``target_projector``.
    history_ : dict of list
        Per-epoch loss, learning rate, time (and kNN accuracy with ``eval_set``).

    References
    ----------
    J.-B. Grill, F. Strub, F. Altché, C. Tallec, P. H. Richemond et al.
    Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning.
    NeurIPS 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_contrastive import BYOL
    >>> X, _ = load_digits(return_X_y=True)
    >>> BYOL("mlp", max_epochs=1, batch_size=64, random_state=0).fit_transform(X).shape
    (1797, 256)
    """

    name = "byol"
    family = "contrastive"
    momentum_modules = ("target_backbone", "target_projector")
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "base_momentum": [Interval(Real, 0, 1, closed="both")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "projection_hidden_dim": [Interval(Integral, 1, None, closed="left"), None],
        "crop_min_scale": [Interval(Real, 0, 1, closed="right")],
        "blur": [StrOptions({"auto"}), "boolean"],
        "corruption_rate": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, backbone="small_cnn", *, base_momentum=0.99, projection_dim=256,
                 projection_hidden_dim=None, crop_min_scale=0.2, blur="auto",
                 corruption_rate=0.6, backbone_kwargs=None, weights=None, part=None,
                 max_epochs=10, batch_size=256, inference_batch_size=256, optimizer="auto",
                 lr="auto", weight_decay="auto", gradient_clip=None, device="auto",
                 precision="auto", num_workers=0, random_state=None, verbose=1,
                 checkpoint_dir=None, resume="auto", warm_start=False, eval_set=None,
                 n_iter_no_change=None, image_size=None, channels="auto", scale="auto",
                 image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        hidden = self.projection_hidden_dim or 2 * spec.backbone_dim
        backbone = spec.make_backbone()
        projector = projection_head(spec.backbone_dim, hidden, self.projection_dim)
        return nn.ModuleDict({
            "backbone": backbone, "projector": projector,
            "predictor": projection_head(self.projection_dim, hidden, self.projection_dim),
            "target_backbone": copy.deepcopy(backbone).requires_grad_(False),
            "target_projector": copy.deepcopy(projector).requires_grad_(False),
        })

    def views(self, spec):
        if spec.modality == "tabular":
            return [FeatureCorruption(self.corruption_rate)] * 2
        size = spec.input_shape[-1]
        blur = use_blur(self.blur, size)
        return byol_views(size, self.crop_min_scale, blur)

    def optimizers(self, modules):
        online = [p for key in ("backbone", "projector", "predictor")
                  for p in modules[key].parameters()]
        return {"online": OptimizerSpec(online, "adamw", lr=1e-3, weight_decay=1e-6, warmup=0.1)}

    def training_step(self, modules, batch, ctx):
        online = nn.Sequential(modules["backbone"], modules["projector"])
        target = nn.Sequential(modules["target_backbone"], modules["target_projector"])
        p1, p2 = (modules["predictor"](online(v)) for v in batch.views)
        with torch.no_grad():
            z1, z2 = (target(v) for v in batch.views)
        ctx.optimize("online", byol_loss(p1, z2) + byol_loss(p2, z1))
        momentum_update(online, target, target_momentum(self.base_momentum, ctx.progress))

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}
