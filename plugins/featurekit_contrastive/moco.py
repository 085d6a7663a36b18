"""MoCo v2: contrast with a queue of keys from a momentum encoder (He et al. 2020;
Chen et al. 2020)."""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from featurekit.base import FeatureExtractor, store_params
from featurekit.data.augment import FeatureCorruption, image_recipe
from featurekit.method import OptimizerSpec
from featurekit_contrastive.heads import projection_head
from featurekit_contrastive.losses import info_nce
from featurekit_contrastive.views import use_blur

#: MoCo's ImageNet queue length, the cap of ``queue_size="auto"``.
MAX_AUTO_QUEUE = 65536


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online``, parameter by parameter.

    MoCo's key-encoder update (He et al. 2020, eq. (2)) and BYOL's target
    update. Buffers (batch-norm statistics) are left to the target's own
    forward passes, as in both papers' code.
    """
    for po, pt in zip(online.parameters(), target.parameters()):
        pt.mul_(momentum).add_(po.detach(), alpha=1 - momentum)


class KeyQueue(nn.Module):
    """A FIFO of normalized negative keys.

    The keys and the write pointer are registered buffers, so checkpoints,
    pickles, ``save``/``load`` and resume all carry the queue where it was.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, k: torch.Tensor) -> None:
        """Overwrite the oldest ``len(k)`` keys (only the newest fit if ``k`` is longer)."""
        size = len(self.keys)
        k = k[-size:]
        idx = (self.ptr + torch.arange(len(k), device=k.device)) % size
        self.keys[idx] = k.to(self.keys.dtype)
        self.ptr.copy_((self.ptr + len(k)) % size)


def auto_queue_size(n_samples: int, batch_size: int) -> int:
    """The largest multiple of the batch not above ``n_samples``, at most 65536."""
    batch = min(batch_size, n_samples)
    return min(n_samples // batch, MAX_AUTO_QUEUE // batch) * batch


def split_forward(encoder: nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """``encoder`` over ``splits`` chunks of ``x`` (each of 2 samples or more), so each
    chunk's batch norm uses its own statistics, as on ``splits`` devices."""
    splits = max(1, min(splits, len(x) // 2))
    if splits == 1:
        return encoder(x)
    return torch.cat([encoder(c) for c in torch.tensor_split(x, splits)])


class MoCoV2(FeatureExtractor):
    """MoCo v2: queries match their key among a queue of past keys.

    A query encoder (backbone + 2-layer MLP head) is trained with InfoNCE
    against the key of the other view of the same sample, computed by a
    momentum (EMA) copy of the encoder, and against a queue of keys from
    earlier batches as negatives. Following Algorithm 1 of MoCo, each step
    first updates the key encoder, then computes the keys, takes an optimizer
    step, and finally enqueues the keys. ``transform`` returns the backbone's
    features.

    Shuffling BN. MoCo shuffles the keys across GPUs so that a query and its
    positive key never share batch-norm statistics (otherwise the batch
    statistics leak which key is the positive, and the model cheats). This
    happens on one device too, so it is emulated here as in the authors'
    CIFAR demo: the query batch runs through the encoder in ``bn_splits``
    chunks, and the key batch is permuted, run in ``bn_splits`` chunks, and
    unpermuted. ``bn_splits=1`` turns this off.

    Parameters
    ----------
    backbone : str or callable, default="small_cnn"
        A registered backbone name or a factory returning an ``nn.Module``.
    temperature : float, default=0.2
        InfoNCE temperature (MoCo v2's value).
    momentum : float, default=0.99
        Key-encoder EMA momentum. The paper uses 0.999 for 1.28 M images and
        hundreds of epochs; on small data sets with few steps 0.999 leaves the
        key encoder almost at its initialization.
    queue_size : "auto" or int, default="auto"
        Number of negative keys. "auto" is the largest multiple of the batch
        size not above the number of training samples, at most 65536 (the
        paper's value). An int larger than the number of samples is clipped
        to it with a warning: the queue would otherwise hold several stale
        keys of the same samples, including each query's own.
    projection_dim : int, default=128
        Output size of the MLP head (the paper's).
    projection_hidden_dim : int or None, default=None
        Hidden size of the head; None uses the backbone's feature size (2048
        for the paper's ResNet-50).
    bn_splits : int, default=2
        Chunks the batch norms of queries and (shuffled) keys see, emulating
        the multi-GPU shuffling BN; chunks keep at least 2 samples.
    crop_min_scale : float, default=0.2
        Smallest area fraction of the random resized crop (MoCo v2's value).
    blur : "auto" or bool, default="auto"
        Gaussian blur with p=0.5 (MoCo v2). "auto" turns it off for images of
        32 px or less, where a blur erases most of the detail (as SimCLR does
        on CIFAR-10).
    corruption_rate : float, default=0.6
        For tabular input, the fraction of features replaced by another row's
        values in each view (SCARF, Bahri et al. 2022), in place of image augmentations.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: SGD with momentum 0.9, lr 0.03 x batch_size / 256,
        weight decay 1e-4, cosine schedule, as MoCo v2.

    Attributes
    ----------
    backbone_ : nn.Module
        The trained (query) backbone.
    modules_ : nn.ModuleDict
        ``backbone``, ``projector``, their momentum copies ``key_backbone`` and
        ``key_projector``, and ``queue`` (a :class:`KeyQueue`).
    history_ : dict of list
        Per-epoch loss, learning rate, time (and kNN accuracy with ``eval_set``).

    References
    ----------
    K. He, H. Fan, Y. Wu, S. Xie, R. Girshick. Momentum Contrast for
    Unsupervised Visual Representation Learning. CVPR 2020.

    X. Chen, H. Fan, R. Girshick, K. He. Improved Baselines with Momentum
    Contrastive Learning. arXiv:2003.04297, 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_contrastive import MoCoV2
    >>> X, _ = load_digits(return_X_y=True)
    >>> MoCoV2("mlp", max_epochs=1, batch_size=64, random_state=0).fit_transform(X).shape
    (1797, 256)
    """

    name = "moco_v2"
    family = "contrastive"
    momentum_modules = ("key_backbone", "key_projector")
    supports_distributed = True
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "queue_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "projection_hidden_dim": [Interval(Integral, 1, None, closed="left"), None],
        "bn_splits": [Interval(Integral, 1, None, closed="left")],
        "crop_min_scale": [Interval(Real, 0, 1, closed="right")],
        "blur": [StrOptions({"auto"}), "boolean"],
        "corruption_rate": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, backbone="small_cnn", *, temperature=0.2, momentum=0.99,
                 queue_size="auto", projection_dim=128, projection_hidden_dim=None, bn_splits=2,
                 crop_min_scale=0.2, blur="auto", corruption_rate=0.6, backbone_kwargs=None,
                 weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    def _queue_size(self, n_samples: int) -> int:
        if self.queue_size == "auto":
            return auto_queue_size(n_samples, self.batch_size)
        return min(self.queue_size, n_samples)

    def build(self, spec):
        backbone = spec.make_backbone()
        projector = projection_head(spec.backbone_dim, self.projection_hidden_dim
                                    or spec.backbone_dim, self.projection_dim)
        return nn.ModuleDict({
            "backbone": backbone, "projector": projector,
            "key_backbone": copy.deepcopy(backbone).requires_grad_(False),
            "key_projector": copy.deepcopy(projector).requires_grad_(False),
            "queue": KeyQueue(self._queue_size(spec.n_samples), self.projection_dim),
        })

    def views(self, spec):
        # Warned here, not in build: build also runs when a fitted model is unpickled.
        if self.queue_size != "auto" and self.queue_size > spec.n_samples:
            warnings.warn(f"queue_size={self.queue_size} is larger than the {spec.n_samples} "
                          f"training samples; clipped to {spec.n_samples} (a longer queue "
                          "would hold stale copies of the same samples' keys). Set "
                          "queue_size='auto' or a smaller value", UserWarning, stacklevel=2)
        if spec.modality == "tabular":
            return [FeatureCorruption(self.corruption_rate)] * 2
        size = spec.input_shape[-1]
        blur = use_blur(self.blur, size)
        recipe = image_recipe(size, strength=1.0, blur=blur, min_scale=self.crop_min_scale)
        return [recipe, recipe]

    def optimizers(self, modules):
        params = [*modules["backbone"].parameters(), *modules["projector"].parameters()]
        return {"encoder": OptimizerSpec(params, "sgd", lr=0.03, weight_decay=1e-4, momentum=0.9,
                                         lr_batch_scaling=True)}

    def training_step(self, modules, batch, ctx):
        query = nn.Sequential(modules["backbone"], modules["projector"])
        key = nn.Sequential(modules["key_backbone"], modules["key_projector"])
        momentum_update(query, key, self.momentum)
        with torch.no_grad():
            x_k = batch.views[1]
            order = torch.randperm(len(x_k), device=x_k.device)
            k = split_forward(key, x_k[order], self.bn_splits)[torch.argsort(order)]
            k = F.normalize(k.float(), dim=1)
        q = split_forward(query, batch.views[0], self.bn_splits)
        ctx.optimize("encoder", info_nce(q, k, modules["queue"].keys, self.temperature))
        modules["queue"].push(ctx.all_gather(k))

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}
