"""SimCLR: contrastive learning with in-batch negatives (Chen et al. 2020)."""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval
from torch import nn

from featurekit.base import FeatureExtractor, store_params
from featurekit.data.augment import FeatureCorruption, image_recipe
from featurekit.method import OptimizerSpec
from featurekit_contrastive.heads import projection_head
from featurekit_contrastive.losses import nt_xent


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
        Colour-jitter strength s (0.8s, 0.8s, 0.8s, 0.2s); paper: 1.0 ImageNet, 0.5 CIFAR-10.
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
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "projection_hidden_dim": [Interval(Integral, 1, None, closed="left"), None],
        "crop_min_scale": [Interval(Real, 0, 1, closed="right")],
        "color_strength": [Interval(Real, 0, None, closed="left")],
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
        if spec.modality == "tabular":
            return [FeatureCorruption(self.corruption_rate)] * 2
        recipe = image_recipe(spec.input_shape[-1], strength=self.color_strength,
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
