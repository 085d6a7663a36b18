"""Contrastive losses, one per function, each citing its paper."""

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
