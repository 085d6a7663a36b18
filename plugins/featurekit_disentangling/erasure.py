"""LEACE: closed-form linear erasure of a group from features (Belrose et al. 2023).

An adversarial critic only pushes the content code toward group-invariance;
what it misses, a linear probe reads. LEACE removes exactly the linear part:
the affine map ``x -> x - M (x - mean)`` with ``M = S^(1/2) P S^(-1/2)``,
where ``S`` is the covariance of ``x`` and ``P`` the orthogonal projection
onto the columns of ``S^(-1/2) Cov(x, z)`` (``z`` the one-hot group). After
it, every group has the same mean, so no linear classifier predicts the group
from the training rows better than a constant (the paper's Theorem 3.1),
and among all maps that do so it moves the features least (in the whitened
norm). It erases at most ``n_groups - 1`` directions.

The guarantee is linear and on the data the eraser was fitted on: a
non-linear reader may still find the group, and on new rows the group means
are only as equal as the fitted ones generalize.
"""

from __future__ import annotations

import torch
from torch import nn


#: Relative variance (to the largest direction's) below which a direction of the
#: features counts as constant: a standard deviation 1e-6 of the largest one's.
VARIANCE_FLOOR = 1e-12


class LinearEraser(nn.Module):
    """``x - (x - mean) @ matrix.T``: a LEACE eraser; the identity until :meth:`fit`.

    The buffers are part of the model's state, so a saved model erases as
    the fitted one did. Unfitted, ``matrix`` is zero and the map is exactly
    the identity (no branch, so no device sync per batch).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("matrix", torch.zeros(dim, dim))
        self.register_buffer("rank", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 even under bf16 autocast: a bf16 matrix would leave a fixed linear leak.
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            return x - (x - self.mean) @ self.matrix.T

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A model saved before the eraser existed has none: it loads as the identity.
        for name, buffer in self._buffers.items():
            state_dict.setdefault(prefix + name, buffer.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset(self) -> None:
        """Back to the identity."""
        self.mean.zero_()
        self.matrix.zero_()
        self.rank.zero_()

    @torch.no_grad()
    def fit(self, x: torch.Tensor, codes: torch.Tensor, n_groups: int) -> LinearEraser:
        """Fit the eraser of the groups ``codes`` (0..n_groups-1) from the rows ``x``."""
        mean, matrix, rank = leace(x, codes, n_groups)
        self.mean.copy_(mean)
        self.matrix.copy_(matrix)
        self.rank.fill_(rank)
        return self


def leace(x: torch.Tensor, codes: torch.Tensor, n_groups: int
          ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """LEACE's ``mean``, ``M`` and the number of erased directions, in float64.

    Directions of ``x`` with (numerically) no variance, below ``VARIANCE_FLOOR``
    times the largest, are left alone, as are groups with no rows.
    """
    x = x.detach().to(torch.float64).cpu()
    n, dim = x.shape
    mean = x.mean(dim=0)
    centered = x - mean
    z = nn.functional.one_hot(codes.cpu().long(), n_groups).to(torch.float64)
    cross = centered.T @ (z - z.mean(dim=0)) / n  # Cov(x, z): dim x n_groups
    values, vectors = torch.linalg.eigh(centered.T @ centered / n)
    floor = values.max().clamp_min(0) * VARIANCE_FLOOR
    kept = values > floor
    root = torch.where(kept, values.clamp_min(0).sqrt(), torch.zeros_like(values))
    inv_root = torch.where(kept, 1.0 / root.clamp_min(1e-300), torch.zeros_like(values))
    whiten = vectors @ torch.diag(inv_root) @ vectors.T
    unwhiten = vectors @ torch.diag(root) @ vectors.T
    u, s, _ = torch.linalg.svd(whiten @ cross, full_matrices=False)
    basis = u[:, s > s.max() * max(dim, n_groups) * torch.finfo(torch.float32).eps]
    matrix = unwhiten @ basis @ basis.T @ whiten
    return mean.to(torch.float32), matrix.to(torch.float32), basis.shape[1]
