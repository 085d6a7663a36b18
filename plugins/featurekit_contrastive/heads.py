"""MLP heads shared by the contrastive methods, each citing the paper it follows."""

from __future__ import annotations

from torch import nn


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """A 2-layer MLP head: Linear-BN-ReLU-Linear.

    SimCLR's projection head g(.) (Chen et al. 2020), MoCo v2's MLP head
    (Chen et al. 2020, "Improved Baselines"), BYOL's projector and predictor
    (Grill et al. 2020) and SimSiam's bottleneck predictor (Chen & He 2021,
    with ``hidden_dim = out_dim / 4``) all have this shape.

    Examples
    --------
    >>> import torch
    >>> projection_head(64, 32, 16)(torch.randn(4, 64)).shape
    torch.Size([4, 16])
    """
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim),
                         nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def simsiam_projector(in_dim: int, dim: int) -> nn.Sequential:
    """SimSiam's 3-layer projection MLP, BN on every layer including the output.

    Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
    Sec. 4: (Linear-BN-ReLU) x 2, then Linear-BN with no ReLU; every hidden
    layer has ``dim`` units (2048 in the paper). As in the authors' code, the
    output BN has no affine parameters and the last Linear no bias (the BN
    removes it anyway).

    Examples
    --------
    >>> import torch
    >>> simsiam_projector(64, 32)(torch.randn(4, 64)).shape
    torch.Size([4, 32])
    """
    return nn.Sequential(
        nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False))
