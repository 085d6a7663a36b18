"""SimCLR: contrastive learning with in-batch negatives (Chen et al. 2020)."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval
from torch import nn

from featurekit.base import FeatureExtractor, store_params
from featurekit.data.augment import FeatureCorruption, image_recipe
from featurekit.method import OptimizerSpec
from featurekit_contrastive.heads import projection_head
from featurekit_contrastive.losses import nt_xent

#: Below this batch, SimCLR warns that it has too few in-batch negatives.
MIN_USEFUL_BATCH = 8


class SimCLR(FeatureExtractor):
    """SimCLR: two augmented views of each sample attract, other samples repel.

    The backbone f and a 2-layer projection head g are trained with the
    NT-Xent loss over the 2N views of a batch (negatives from the batch).
    ``transform`` returns the backbone's features f(x), not the projection,
    as the paper recommends for downstream tasks.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory returning an ``nn.Module``.
    temperature : float, default=0.5
        NT-Xent temperature (the paper's CIFAR-10 value; 0.1 for ImageNet with LARS).
    projection_dim : int, default=128
        Output size of the projection head.
    projection_hidden_dim : int or None, default=None
        Hidden size of the head; None uses the backbone's feature size, as the paper.
    crop_min_scale : float, default=0.2
        Smallest area fraction of the random resized crop (paper: 0.08 for
        ImageNet; 0.2 keeps enough of a 28-32 px image).
    color_strength : float, default=0.5
        Colour-jitter strength s: brightness, contrast and saturation 0.8 s,
        hue 0.2 s, applied with p=0.8 (the paper's appendix A; s is 1.0 for
        ImageNet, 0.5 for CIFAR-10). At most 2.5, where the hue reaches 0.5.
    blur : bool, default=False
        Gaussian blur (paper: on for ImageNet, off for CIFAR-10).
    corruption_rate : float, default=0.6
        For tabular input, the fraction of features replaced by another row's
        values in each view (SCARF, Bahri et al. 2022), in place of image augmentations.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: AdamW, lr 1e-3, weight decay 1e-6, 10% warmup then
        cosine. The paper uses LARS with lr 0.3 x batch_size / 256 for batches of
        4096; with the small batches of CPU runs Adam(W) converges more reliably.

    Attributes
    ----------
    backbone_ : nn.Module
        The trained backbone.
    history_ : dict of list
        Per-epoch loss, learning rate, time (and kNN accuracy with ``eval_set``).

    References
    ----------
    T. Chen, S. Kornblith, M. Norouzi, G. Hinton. A Simple Framework for
    Contrastive Learning of Visual Representations. ICML 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_contrastive import SimCLR
    >>> X, _ = load_digits(return_X_y=True)
    >>> SimCLR("mlp", max_epochs=1, batch_size=64, random_state=0).fit_transform(X).shape
    (1797, 256)
    """

    name = "simclr"
    family = "contrastive"
    supports_distributed = True
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "projection_hidden_dim": [Interval(Integral, 1, None, closed="left"), None],
        "crop_min_scale": [Interval(Real, 0, 1, closed="right")],
        "color_strength": [Interval(Real, 0, 2.5, closed="both")],
        "blur": ["boolean"],
        "corruption_rate": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, backbone="small_cnn", *, temperature=0.5, projection_dim=128,
                 projection_hidden_dim=None, crop_min_scale=0.2, color_strength=0.5, blur=False,
                 corruption_rate=0.6, backbone_kwargs=None, weights=None, part=None,
                 max_epochs=10, batch_size=256, inference_batch_size=256, optimizer="auto",
                 lr="auto", weight_decay="auto", gradient_clip=None, device="auto",
                 precision="auto", num_workers=0, random_state=None, verbose=1,
                 checkpoint_dir=None, resume="auto", warm_start=False, eval_set=None,
                 n_iter_no_change=None, image_size=None, channels="auto", scale="auto",
                 image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        hidden = self.projection_hidden_dim or spec.backbone_dim
        return nn.ModuleDict({
            "backbone": spec.make_backbone(),
            "projector": projection_head(spec.backbone_dim, hidden, self.projection_dim),
        })

    def views(self, spec):
        # Warned here, not in build: build also runs when a fitted model is unpickled.
        batch = min(self.batch_size, spec.n_samples)
        if batch < MIN_USEFUL_BATCH:
            warnings.warn(
                f"SimCLR takes its negatives from the batch, and a batch of {batch} gives each "
                f"view only {2 * batch - 2} of them; contrastive features need many more "
                f"(the paper uses 256 to 8192). Raise batch_size= (and give at least "
                f"{MIN_USEFUL_BATCH} samples), or use MoCo v2, whose queue supplies negatives "
                "beyond the batch", UserWarning, stacklevel=2)
        if spec.modality == "tabular":
            return [FeatureCorruption(self.corruption_rate)] * 2
        # image_recipe's strength is MoCo's (0.4 per unit); SimCLR's s is twice that.
        recipe = image_recipe(spec.input_shape[-1], strength=2 * self.color_strength,
                              blur=self.blur, min_scale=self.crop_min_scale)
        return [recipe, recipe]

    def optimizers(self, modules):
        return {"model": OptimizerSpec(modules.parameters(), "adamw", lr=1e-3,
                                       weight_decay=1e-6, warmup=0.1)}

    def training_step(self, modules, batch, ctx):
        z1, z2 = (modules["projector"](modules["backbone"](v)) for v in batch.views)
        loss = nt_xent(ctx.all_gather(z1), ctx.all_gather(z2), self.temperature)
        ctx.optimize("model", loss)

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}
