"""Self-supervised losses (contrastive and not), one per function, each citing its paper."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR.

    Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020, eq. (1): for each of the 2N views, the other
    view of the same sample is the positive and the remaining 2N - 2 views of
    the batch are the negatives; the loss is averaged over all 2N anchors.

    Parameters
    ----------
    z1, z2 : Tensor of shape (n_samples, dim)
        Projections of the two views; row i of each comes from sample i.
    temperature : float
        The softmax temperature tau.

    Examples
    --------
    >>> z = torch.randn(8, 16)
    >>> float(nt_xent(z, z, 0.5)) < float(nt_xent(z, torch.randn(8, 16), 0.5))
    True
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE with a queue of negatives, the loss of MoCo.

    He et al., "Momentum Contrast for Unsupervised Visual Representation
    Learning", CVPR 2020, eq. (1) and Algorithm 1: for each query q, the key
    k+ of the other view of the same sample is the positive (logit index 0)
    and the K queued keys are the negatives; the loss is the cross-entropy of
    the K + 1 logits ``q . k / temperature``, averaged over the batch.

    ``q`` and ``k`` are L2-normalized here; ``queue`` must already hold
    normalized keys (as MoCo enqueues them). No gradient is stopped here:
    the caller computes ``k`` without gradient (the momentum encoder).

    Parameters
    ----------
    q, k : Tensor of shape (n_samples, dim)
        Queries and their positive keys; row i of each comes from sample i.
    queue : Tensor of shape (n_negatives, dim)
        Normalized negative keys.
    temperature : float
        The softmax temperature tau (0.2 in MoCo v2).

    Examples
    --------
    >>> q, queue = torch.randn(8, 16), F.normalize(torch.randn(32, 16), dim=1)
    >>> float(info_nce(q, q, queue, 0.2)) < float(info_nce(q, torch.randn(8, 16), queue, 0.2))
    True
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ queue.float().T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, stopgrad(z)): the negative cosine similarity, batch mean.

    Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
    eq. (1) and (3). The stop-gradient is applied here, to ``z``: no gradient
    ever flows into ``z``, so the symmetric loss is simply
    ``negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2``.

    Parameters
    ----------
    p : Tensor of shape (n_samples, dim)
        Predictor outputs (receive the gradient).
    z : Tensor of shape (n_samples, dim)
        Projections of the other view (treated as constants).

    Examples
    --------
    >>> z = torch.randn(8, 16)
    >>> round(float(negative_cosine(z, z)), 4)
    -1.0
    """
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalized mean squared error, ``2 - 2 cos(p, z)``, batch mean.

    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, eq. (2):
    ``|| p/|p| - z/|z| ||^2 = 2 - 2 <p, z> / (|p| |z|)``. The target ``z`` is
    detached here (it comes from the EMA target network, which gets no
    gradient); BYOL's symmetric loss sums this over both view orders:
    ``byol_loss(p1, z2) + byol_loss(p2, z1)``.

    Parameters
    ----------
    p : Tensor of shape (n_samples, dim)
        Online predictions.
    z : Tensor of shape (n_samples, dim)
        Target projections of the other view.

    Examples
    --------
    >>> z = torch.randn(8, 16)
    >>> abs(float(byol_loss(z, z))) < 1e-6, round(float(byol_loss(z, -z)), 4)
    (True, 4.0)
    """
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()
