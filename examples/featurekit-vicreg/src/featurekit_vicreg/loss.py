"""The VICReg loss: variance, invariance and covariance terms (Bardes et al. 2022)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch.nn import functional as F

#: The target standard deviation gamma and the epsilon of the variance term (the paper's).
GAMMA = 1.0
EPS = 1e-4


def invariance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The invariance term s(Z, Z'): mean squared distance of the two views' embeddings.

    Averaged over samples and dimensions (``F.mse_loss``), as the authors'
    Algorithm 1 and code do; eq. (5) of the paper writes a sum over
    dimensions, a factor ``d`` that the default coefficients assume absent.

    Examples
    --------
    >>> z = torch.randn(8, 4)
    >>> float(invariance(z, z)), float(invariance(z, z + 1))
    (0.0, 1.0)
    """
    return F.mse_loss(z1, z2)


def variance(z: torch.Tensor, gamma: float = GAMMA, eps: float = EPS) -> torch.Tensor:
    """The variance term v(Z): a hinge keeping every dimension's std at least ``gamma``.

    Eq. (1)-(2): ``mean_j max(0, gamma - sqrt(Var(z^j) + eps))`` with the
    unbiased variance over the batch. It is zero once every dimension's
    standard deviation reaches ``gamma``, and pushes collapsed (constant)
    dimensions apart.

    Examples
    --------
    >>> round(float(variance(torch.zeros(8, 4))), 4)   # collapsed: 1 - sqrt(eps)
    0.99
    >>> float(variance(3 * torch.randn(64, 4, generator=torch.Generator().manual_seed(0))))
    0.0
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance(z: torch.Tensor) -> torch.Tensor:
    """The covariance term c(Z): squared off-diagonal covariances, summed, over ``d``.

    Eq. (3)-(4): with ``C = (Z - mean)^T (Z - mean) / (n - 1)``,
    ``c(Z) = sum_{i != j} C_ij^2 / d``. It decorrelates the dimensions, so
    that they carry different information.

    Examples
    --------
    >>> float(covariance(torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])))
    0.0
    >>> float(covariance(torch.tensor([[1.0, 1.0], [-1.0, -1.0]])))   # C = [[2, 2], [2, 2]]
    4.0
    """
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (n - 1)
    off_diagonal = cov - torch.diag_embed(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


class VICRegLoss(NamedTuple):
    """The weighted total (``loss``, to optimize) and its three unweighted terms."""

    loss: torch.Tensor
    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    *,
    all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> VICRegLoss:
    """VICReg's loss of the embeddings of two views of a batch.

    Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning", ICLR 2022, eq. (6)::

        loss = sim_coeff * s(Z, Z')
             + std_coeff * (v(Z) + v(Z')) / 2
             + cov_coeff * (c(Z) + c(Z'))

    with the normalisations of the authors' released code (``main_vicreg.py``),
    under which the default coefficients 25, 25 and 1 were tuned: the
    invariance term is a mean over samples and dimensions, and the two
    branches' variance terms are averaged (eq. (6) sums them).

    Parameters
    ----------
    z1, z2 : Tensor of shape (n_samples, dim)
        Expander outputs of the two views; row i of each comes from sample i.
    sim_coeff, std_coeff, cov_coeff : float
        The paper's lambda, mu and nu.
    all_gather : callable, default=None
        Concatenates a tensor over processes (``ctx.all_gather``). The
        variance and covariance are statistics of the whole batch, so they
        are computed on the gathered embeddings; the invariance term is
        per-sample and stays local, as in the authors' code.

    Returns
    -------
    VICRegLoss
        ``loss`` and the unweighted ``invariance``, ``variance`` (mean of the
        branches) and ``covariance`` (sum of the branches): scalars in float32, or
        float64 for float64 embeddings.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(32, 8, generator=g)
    >>> same = vicreg_loss(z, z)
    >>> float(same.invariance), float(same.loss) < float(vicreg_loss(z, torch.randn(32, 8)).loss)
    (0.0, True)
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError("vicreg_loss expects two embeddings of the same shape (n_samples, dim); "
                         f"got {tuple(z1.shape)} and {tuple(z2.shape)}")
    # Variance and covariance of a low-precision batch are too coarse to
    # decorrelate with: compute the loss in (at least) float32, even under
    # bf16 autocast.
    dtype = torch.promote_types(z1.dtype, torch.float32)
    with torch.autocast(z1.device.type, enabled=False):
        z1, z2 = z1.to(dtype), z2.to(dtype)
        inv = invariance(z1, z2)
        if all_gather is not None:
            z1, z2 = all_gather(z1), all_gather(z2)
        if len(z1) < 2:
            raise ValueError("VICReg's variance and covariance terms need a batch of at least "
                             f"2 samples; got {len(z1)}")
        var = (variance(z1) + variance(z2)) / 2
        cov = covariance(z1) + covariance(z2)
        loss = sim_coeff * inv + std_coeff * var + cov_coeff * cov
    return VICRegLoss(loss, inv, var, cov)
