"""The reconstructive family's losses, each with the paper it follows.

Per-sample terms return a tensor of shape (n,), summed over the input's
dimensions, so an ELBO is in nats per sample as in Kingma & Welling (2014).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log N(target; mean, I) per sample: the Gaussian likelihood with unit variance.

    Examples
    --------
    >>> round(float(gaussian_nll(torch.zeros(1, 2), torch.zeros(1, 2))[0]), 4)  # log(2 pi)
    1.8379
    """
    squared = (target.float() - mean.float()).pow(2).flatten(1)
    return 0.5 * (squared + math.log(2 * math.pi)).sum(dim=1)


def bernoulli_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(target; sigmoid(logits)) per sample, for targets in [0, 1].

    Grey pixels are not binary; like Kingma & Welling (2014) on MNIST, the
    cross-entropy is used with them as they are.

    Examples
    --------
    >>> round(float(bernoulli_nll(torch.zeros(1, 3), torch.ones(1, 3))[0]), 4)  # 3 log 2
    2.0794
    """
    return F.binary_cross_entropy_with_logits(
        logits.float(), target.float(), reduction="none").flatten(1).sum(dim=1)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor, *,
                       per_dimension: bool = False) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample (Kingma & Welling 2014, appendix B),
    or per sample and latent dimension (shape of ``mu``) with ``per_dimension=True``.

    Examples
    --------
    >>> float(kl_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4))[0])
    0.0
    >>> kl_standard_normal(torch.ones(2, 4), torch.zeros(2, 4), per_dimension=True).shape
    torch.Size([2, 4])
    """
    mu, logvar = mu.float(), logvar.float()
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl if per_dimension else kl.sum(dim=1)


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      norm_pix: bool = False) -> torch.Tensor:
    """MAE's loss: the mean squared error over the masked patches only (He et al. 2022).

    Parameters
    ----------
    pred, target : Tensor of shape (n, n_patches, patch_dim)
        Predicted and true patches (pixels flattened per patch).
    mask : Tensor of shape (n, n_patches), bool
        True where a patch was masked (hidden from the encoder).
    norm_pix : bool, default=False
        Predict each patch normalized by its own mean and standard deviation
        (the paper's ``norm_pix_loss``, which gives better features).

    Returns
    -------
    Tensor
        A scalar: the per-patch MSE averaged over the masked patches.

    Examples
    --------
    >>> target = torch.ones(1, 4, 3)
    >>> mask = torch.tensor([[True, False, False, False]])
    >>> float(masked_patch_loss(torch.zeros(1, 4, 3), target, mask))
    1.0
    """
    target = target.float()
    if norm_pix:
        target = normalize_patches(target)
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)
    mask = mask.float()
    return (per_patch * mask).sum() / mask.sum()


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch minus its mean, over its standard deviation (MAE's normalized targets).

    Examples
    --------
    >>> normalize_patches(torch.tensor([[[1.0, 3.0]]])).round().tolist()
    [[[-1.0, 1.0]]]
    """
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()
