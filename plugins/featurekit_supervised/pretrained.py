"""A frozen backbone used as it is (pretrained, or untrained as a baseline)."""

from __future__ import annotations

from featurekit.base import FeatureExtractor, store_params
from torch import nn


class Pretrained(FeatureExtractor):
    """Features of a frozen backbone: ``fit`` only records the input's shape.

    With ``weights`` (a torchvision weights name, a state_dict file, or a
    featurekit model file) this is classic transfer learning's feature
    extractor; with ``weights=None`` it is the untrained, randomly initialized
    backbone (seeded by ``random_state``), the baseline a learned method has to beat.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory returning an ``nn.Module``.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``);
        the training ones (``max_epochs``, ``lr``...) have no effect.

    Attributes
    ----------
    backbone_ : nn.Module
        The frozen backbone (``requires_grad=False``).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_supervised import Pretrained
    >>> X, _ = load_digits(return_X_y=True)
    >>> Pretrained("mlp", random_state=0).fit_transform(X).shape
    (1797, 256)
    """

    name = "pretrained"
    family = "supervised"

    def __init__(self, backbone="small_cnn", *, backbone_kwargs=None, weights=None, part=None,
                 max_epochs=10, batch_size=256, inference_batch_size=256, optimizer="auto",
                 lr="auto", weight_decay="auto", gradient_clip=None, device="auto",
                 precision="auto", num_workers=0, random_state=None, verbose=1,
                 checkpoint_dir=None, resume="auto", warm_start=False, eval_set=None,
                 n_iter_no_change=None, image_size=None, channels="auto", scale="auto",
                 image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        backbone = spec.make_backbone().requires_grad_(False)
        return nn.ModuleDict({"backbone": backbone})

    def optimizers(self, modules):
        return {}

    def training_step(self, modules, batch, ctx):
        """Never called: a frozen backbone has nothing to optimize."""

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}
