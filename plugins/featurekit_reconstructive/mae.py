"""MAE: masked autoencoders, a ViT that rebuilds hidden patches (He et al. 2022)."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models import VisionTransformer

from featurekit.base import FeatureExtractor, store_params
from featurekit.exceptions import InputError, ParameterError
from featurekit.method import Interval, OptimizerSpec
from featurekit_reconstructive.losses import masked_patch_loss
from featurekit_reconstructive.patches import (
    MAEDecoder,
    encode_tokens,
    patch_tokens,
    patchify,
    random_masking,
    unpatchify,
)

#: Parameters without weight decay: biases, norms, tokens and positional embeddings.
NO_DECAY_NAMES = ("class_token", "pos_embedding", "mask_token")


class MAE(FeatureExtractor):
    """A masked autoencoder: a ViT sees a random quarter of the patches, and a light
    decoder rebuilds the rest.

    Each image is cut into patches (the ViT backbone's: 4 px for 17-64 px
    images, 2 px for smaller ones); a random ``mask_ratio`` of them is hidden
    per image and step. The encoder, the backbone's patch embedding and
    Transformer blocks, runs on the visible patches only; the decoder gets
    their encodings plus a shared learned mask token for every hidden patch,
    all with fixed sine-cosine positions, and predicts each patch's pixels.
    The loss is the mean squared error on the hidden patches only, with
    targets normalized per patch when ``norm_pix_loss``. ``transform``
    returns the encoder's patch tokens of the whole image, averaged.

    Parameters
    ----------
    backbone : str or callable, default="vit_tiny"
        A Vision Transformer backbone: ``"vit_tiny"``, ``"vit_small"``, or a
        factory returning a torchvision ``VisionTransformer``. Its size and
        patch size can be set with ``backbone_kwargs`` (``patch_size``,
        ``num_layers``, ``num_heads``, ``hidden_dim``, ``mlp_dim``).
    mask_ratio : float, default=0.75
        Fraction of the patches hidden from the encoder (the paper's 75 %).
    norm_pix_loss : bool, default=False
        Predict each hidden patch normalized by its own mean and standard
        deviation. The paper uses it for its best features; off by default
        here, so that ``reconstruct`` gives pixels. With it on,
        ``reconstruct`` scales the predicted patches back with the mean and
        standard deviation of the image's visible pixels, an approximation.
    decoder_dim : int, default=128
        Width of the decoder's tokens (the paper's: 512). A multiple of 4
        and of ``decoder_num_heads``.
    decoder_depth : int, default=2
        Transformer blocks in the decoder (the paper's: 8; it reports that
        even one block gives good features when fine-tuned).
    decoder_num_heads : int, default=4
        Attention heads per decoder block (the paper's: 16).
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Optimizer default: AdamW with betas (0.9, 0.95), weight decay 0.05
        (none on biases, norms, tokens and positional embeddings), 5 % warmup
        then cosine, as the paper; lr 1.5e-3, ten times the paper's
        1.5e-4 x batch_size / 256, which is tuned for 800 epochs (a few epochs
        at the paper's rate leave the reconstructions a blur).

    Attributes
    ----------
    modules_ : nn.ModuleDict
        ``backbone`` (the ViT encoder) and ``decoder``.
    history_ : dict of list
        Per-epoch masked-patch loss, learning rate and time.

    References
    ----------
    K. He, X. Chen, S. Xie, Y. Li, P. Dollár, R. Girshick. Masked Autoencoders
    Are Scalable Vision Learners. CVPR 2022.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from featurekit_reconstructive import MAE
    >>> X = load_digits().images[:64] / 16  # 8 x 8 px in [0, 1]: 2 px patches
    >>> vit = {"num_layers": 1, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}
    >>> mae = MAE(backbone_kwargs=vit, decoder_dim=16, decoder_depth=1, max_epochs=1,
    ...           random_state=0, verbose=0).fit(X)
    >>> mae.transform(X).shape
    (64, 16)
    >>> rebuilt, mask = mae.reconstruct(X[:4], random_state=0, return_mask=True)
    >>> rebuilt.shape, mask.shape, mask.mean()  # 12 of the 16 patches hidden
    ((4, 8, 8), (4, 8, 8), np.float64(0.75))
    """

    name = "mae"
    family = "reconstructive"
    modalities = ("image",)
    verbs = ("reconstruct",)
    #: The conformance kit's small configuration: a one-block ViT (MAE refuses CNNs).
    tiny_params = {"image": {
        "backbone": "vit_tiny", "decoder_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2,
        "backbone_kwargs": {"num_layers": 1, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}}}
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "mask_ratio": [Interval(Real, 0, 1, closed="neither")],
        "norm_pix_loss": ["boolean"],
        "decoder_dim": [Interval(Integral, 4, None, closed="left")],
        "decoder_depth": [Interval(Integral, 1, None, closed="left")],
        "decoder_num_heads": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, backbone="vit_tiny", *, mask_ratio=0.75, norm_pix_loss=False,
                 decoder_dim=128, decoder_depth=2, decoder_num_heads=4, backbone_kwargs=None,
                 weights=None, part=None, max_epochs=10, batch_size=256,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    # -- the method contract -----------------------------------------------------------
    def build(self, spec):
        if self.decoder_dim % 4 or self.decoder_dim % self.decoder_num_heads:
            raise ParameterError(
                f"The 'decoder_dim' parameter of MAE must be a multiple of 4 (for its 2-D "
                f"positional embedding) and of decoder_num_heads={self.decoder_num_heads}. "
                f"Got {self.decoder_dim} instead.")
        vit = spec.make_backbone()
        self._check_vit(vit)
        grid = vit.image_size // vit.patch_size
        decoder = MAEDecoder(vit.hidden_dim, self.decoder_dim, self.decoder_depth,
                             self.decoder_num_heads, (grid, grid),
                             vit.patch_size ** 2 * spec.input_shape[0])
        return nn.ModuleDict({"backbone": vit, "decoder": decoder})

    def outputs(self, spec):
        return {"features": spec.backbone_dim}

    def optimizers(self, modules):
        decay, no_decay = [], []
        for name, p in modules.named_parameters():
            plain = p.ndim <= 1 or name.endswith(NO_DECAY_NAMES)
            (no_decay if plain else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        return {"model": OptimizerSpec(groups, "adamw", lr=1.5e-3, weight_decay=0.05,
                                       betas=(0.9, 0.95), warmup=0.05)}

    def training_step(self, modules, batch, ctx):
        pred, mask = self._predict(modules, batch.x, self.mask_ratio)
        target = patchify(batch.x, modules["backbone"].patch_size)
        ctx.optimize("model", masked_patch_loss(pred, target, mask, self.norm_pix_loss))

    def embed(self, modules, x):
        vit = modules["backbone"]
        return {"features": encode_tokens(vit, patch_tokens(vit, x))[:, 1:].mean(dim=1)}

    def _predict(self, modules: nn.ModuleDict, x: torch.Tensor, mask_ratio: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every patch predicted from a random ``1 - mask_ratio`` of them, and the mask."""
        vit = modules["backbone"]
        tokens = patch_tokens(vit, x)
        keep, mask = random_masking(len(x), tokens.shape[1], mask_ratio, x.device)
        visible = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return modules["decoder"](encode_tokens(vit, visible), keep), mask

    def _check_vit(self, vit: nn.Module) -> None:
        """A torchvision ViT whose patches tile the images given to fit exactly."""
        if not isinstance(vit, VisionTransformer):
            raise ParameterError(
                f"MAE encodes the visible patches with a Vision Transformer, and backbone "
                f"{self.backbone!r} built a {type(vit).__name__}; use backbone='vit_tiny' or "
                "'vit_small' (smaller: backbone_kwargs={'num_layers': 4, 'hidden_dim': 128}).")
        p, side = vit.patch_size, vit.image_size
        h, w = self.input_spec_.sample_shape[1:]
        if h != w:
            raise InputError(
                f"MAE needs square images, and they are {h}x{w} px; pass image_size= (the "
                f"shorter side is resized to it and the centre cropped), a multiple of the "
                f"{p} px patch size such as {side}.")
        if h != side:
            fits = [d for d in range(2, 17) if h % d == 0]
            raise InputError(
                f"MAE cuts images into {p}x{p} px patches, and {h}x{w} px images do not divide "
                f"into them; pass image_size= a multiple of {p} (such as "
                f"{max(p, h // p * p)} or {side}), or backbone_kwargs={{'patch_size': ...}} "
                f"with a size dividing {h} ({', '.join(map(str, fits)) or 'none up to 16'}).")

    # -- verbs -----------------------------------------------------------------------
    def reconstruct(self, X: Any, mask_ratio: float | None = None, random_state: Any = None,
                    return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Hide random patches of ``X``, predict them, paste the visible ones back.

        Parameters
        ----------
        X : array-like or images
            Images of the same kind and shape as given to ``fit``.
        mask_ratio : float in (0, 1), default=None
            Fraction of patches hidden; None uses the fitted ``mask_ratio``.
        random_state : int, RandomState instance or None, default=None
            Seed of the masks; an int gives the same masks every call.
        return_mask : bool, default=False
            Also return which pixels were hidden, e.g. to draw the input the
            encoder saw: ``np.where(mask, 128, X)`` for (N, H, W) uint8 images
            (``mask[..., None]`` for (N, H, W, C)).

        Returns
        -------
        X_rebuilt : ndarray
            Shaped and scaled like ``X``: its visible patches as they were,
            the hidden ones predicted.
        mask : ndarray of shape (n_samples, height, width), bool
            Only with ``return_mask``: True on the pixels of hidden patches.
        """
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0 < ratio < 1:
            raise ParameterError(f"mask_ratio must be a float in (0, 1), the fraction of "
                                 f"patches hidden. Got {ratio!r} instead.")

        def rebuild(modules: nn.ModuleDict, x: torch.Tensor):
            p, shape = modules["backbone"].patch_size, tuple(x.shape[1:])
            pred, mask = self._predict(modules, x, ratio)
            target = patchify(x.float(), p)
            pred = pred.float()
            if self.norm_pix_loss:
                pred = _scale_like_visible(pred, target, mask)
            hidden = mask[..., None].expand_as(target)
            rebuilt = unpatchify(torch.where(hidden, pred, target), p, shape)
            if not return_mask:
                return rebuilt
            return rebuilt, unpatchify(hidden, p, shape)[:, 0]

        return self._map_inputs(X, rebuild, random_state=random_state)


def _scale_like_visible(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalized predictions, scaled to the mean and std of each image's
    visible pixels (the hidden patches' own statistics are unknown)."""
    visible = (~mask)[..., None].float().expand_as(target)
    count = visible.sum(dim=(1, 2), keepdim=True)
    mean = (target * visible).sum(dim=(1, 2), keepdim=True) / count
    var = ((target - mean).pow(2) * visible).sum(dim=(1, 2), keepdim=True) / count
    return pred * (var + eps).sqrt() + mean
