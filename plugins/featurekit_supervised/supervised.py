"""Supervised training of a backbone with a linear head (cross-entropy)."""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from featurekit.base import FeatureExtractor, store_params
from featurekit.data.augment import Compose, RandomHorizontalFlip, RandomResizedCrop
from featurekit.method import OptimizerSpec


class Supervised(ClassifierMixin, FeatureExtractor):
    """Train (or fine-tune) a backbone with labels; features are its penultimate layer.

    A classifier as well as a transformer: ``predict``, ``predict_proba`` and
    ``score`` work like any sklearn classifier's, and ``transform`` returns the
    backbone's features (not the logits). Pass ``weights=<path from est.save()>``
    to fine-tune a backbone pretrained by any featurekit method; the path is a
    parameter, so ``clone`` and ``GridSearchCV`` candidates start from it too.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name (``featurekit.list_backbones()``) or a
        factory returning an ``nn.Module`` that maps a batch to (n, d) features.
    label_smoothing : float, default=0.0
        Cross-entropy label smoothing (Szegedy et al. 2016).
    augment : bool, default=False
        Random resized crops (scale 0.5-1) and flips of image inputs during
        training. Off by default: flips are wrong for digits and text.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``):
        ``max_epochs``, ``batch_size``, ``lr``, ``device``, ``random_state`` ...
        Optimizer default: AdamW, lr 1e-3, weight decay 1e-4, warmup (5%) then
        cosine decay.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    backbone_ : nn.Module
        The trained backbone.
    history_ : dict of list
        Per-epoch training loss, learning rate and time.

    See Also
    --------
    Pretrained : a frozen backbone, no training.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_supervised import Supervised
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = Supervised("mlp", max_epochs=5, random_state=0, verbose=0).fit(X, y)
    >>> clf.transform(X[:3]).shape
    (3, 256)
    """

    name = "supervised"
    family = "supervised"
    y_usage = "target"
    supports_distributed = True
    verbs = ("predict", "predict_proba")
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "augment": ["boolean"],
    }

    def __init__(self, backbone="small_cnn", *, label_smoothing=0.0, augment=False,
                 backbone_kwargs=None, weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        return nn.ModuleDict({"backbone": spec.make_backbone(),
                              "head": nn.Linear(spec.backbone_dim, len(spec.classes))})

    def views(self, spec):
        if not self.augment or spec.modality != "image":
            return []
        return [Compose([RandomResizedCrop(spec.input_shape[-1], scale=(0.5, 1.0)),
                         RandomHorizontalFlip()])]

    def optimizers(self, modules):
        return {"model": OptimizerSpec(modules.parameters(), "adamw", lr=1e-3,
                                       weight_decay=1e-4, warmup=0.05)}

    def training_step(self, modules, batch, ctx):
        x = batch.views[0] if batch.views else batch.x
        logits = modules["head"](modules["backbone"](x))
        loss = F.cross_entropy(logits, batch.y, label_smoothing=self.label_smoothing)
        ctx.optimize("model", loss)

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}

    def predict_proba(self, X):
        """Class probabilities, ndarray of shape (n_samples, n_classes)."""
        check_is_fitted(self, "modules_")
        source = self._transform_inputs(X)

        def probs(modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(modules["head"](modules["backbone"](x)).float(), dim=1)

        return self._apply_batches(source, probs, len(self.classes_))

    def predict(self, X):
        """Predicted class labels, ndarray of shape (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
