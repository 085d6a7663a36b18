"""MAE's parts: patches, random masking, a ViT run on visible patches, the light decoder.

The encoder is featurekit's ViT backbone (torchvision's ``VisionTransformer``):
its patch projection, class token, positional embedding and blocks are run
on the visible patches only, as in He et al. (2022).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import VisionTransformer


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(n, C, H, W) images -> (n, H/p * W/p, p * p * C) patches, row by row.

    Examples
    --------
    >>> patchify(torch.zeros(2, 3, 8, 8), 4).shape
    torch.Size([2, 4, 48])
    """
    n, c, h, w = x.shape
    p = patch_size
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, shape: tuple[int, int, int]
               ) -> torch.Tensor:
    """The inverse of :func:`patchify`: patches -> (n, C, H, W) images of ``shape`` (C, H, W).

    Examples
    --------
    >>> x = torch.randn(2, 3, 8, 8)
    >>> torch.equal(unpatchify(patchify(x, 4), 4, (3, 8, 8)), x)
    True
    """
    c, h, w = shape
    p = patch_size
    x = patches.reshape(len(patches), h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(len(patches), c, h, w)


def random_masking(n: int, n_patches: int, mask_ratio: float, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random masking: shuffle the patches by uniform noise, keep the first ones.

    Draws from torch's global RNG (seeded by the core for each fit and each
    call of a verb). At least one patch is kept and at least one masked.

    Returns
    -------
    keep : Tensor of shape (n, n_keep), int64
        Indices of the visible patches.
    mask : Tensor of shape (n, n_patches), bool
        True where a patch is masked.

    Examples
    --------
    >>> keep, mask = random_masking(2, 16, 0.75, torch.device("cpu"))
    >>> keep.shape, mask.sum(dim=1).tolist()
    (torch.Size([2, 4]), [12, 12])
    """
    n_keep = min(n_patches - 1, max(1, int(n_patches * (1 - mask_ratio))))
    noise = torch.rand(n, n_patches, device=device)
    keep = noise.argsort(dim=1)[:, :n_keep]
    mask = torch.ones(n, n_patches, dtype=torch.bool, device=device)
    mask.scatter_(1, keep, False)
    return keep, mask


def sincos_embedding(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional embeddings, (gh * gw, dim), as MAE's decoder uses.

    Half of ``dim`` encodes the row, half the column, each with sines and
    cosines of geometrically spaced frequencies (Vaswani et al. 2017).

    Examples
    --------
    >>> sincos_embedding(8, (2, 3)).shape
    torch.Size([6, 8])
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos embedding needs a dimension divisible by 4; got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")
    parts = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        angles = pos[:, None] * omega[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def patch_tokens(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Every patch of ``x`` embedded, with its positional embedding: (n, n_patches, dim)."""
    tokens = vit.conv_proj(x).flatten(2).transpose(1, 2)
    return tokens + vit.encoder.pos_embedding[:, 1:]


def encode_tokens(vit: VisionTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The ViT's blocks over the class token and ``tokens``: (n, 1 + n_tokens, dim)."""
    cls = (vit.class_token + vit.encoder.pos_embedding[:, :1]).expand(len(tokens), -1, -1)
    x = torch.cat([cls, tokens], dim=1)
    return vit.encoder.ln(vit.encoder.layers(vit.encoder.dropout(x)))


class MAEDecoder(nn.Module):
    """MAE's light decoder: Transformer blocks over the encoded visible patches and
    mask tokens, then a linear projection to each patch's pixels.

    Parameters
    ----------
    encoder_dim : int
        Width of the encoder's tokens.
    dim : int
        Width of the decoder's tokens (a multiple of 4 and of ``num_heads``).
    depth : int
        Number of Transformer blocks.
    num_heads : int
        Attention heads per block.
    grid : tuple of int
        Patches per column and per row.
    patch_dim : int
        Pixels per patch, ``p * p * C``.

    Examples
    --------
    >>> decoder = MAEDecoder(32, 16, depth=1, num_heads=2, grid=(4, 4), patch_dim=12)
    >>> keep = torch.tensor([[0, 5, 9, 15]])
    >>> decoder(torch.randn(1, 5, 32), keep).shape
    torch.Size([1, 16, 12])
    """

    def __init__(self, encoder_dim: int, dim: int, depth: int, num_heads: int,
                 grid: tuple[int, int], patch_dim: int):
        super().__init__()
        self.n_patches = grid[0] * grid[1]
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)  # as the paper's code
        # Fixed, not learned; the class token's position is all zeros.
        pos = torch.cat([torch.zeros(1, dim), sincos_embedding(dim, grid)])
        self.register_buffer("pos_embedding", pos[None], persistent=False)
        self.blocks = nn.Sequential(*(
            nn.TransformerEncoderLayer(dim, num_heads, dim_feedforward=4 * dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_dim)

    def forward(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Encoded class token and visible patches -> (n, n_patches, patch_dim) pixels."""
        x = self.embed(latent)
        n, dim = len(x), x.shape[-1]
        tokens = self.mask_token.to(x.dtype).expand(n, self.n_patches, dim)
        tokens = tokens.scatter(1, keep[..., None].expand(-1, -1, dim), x[:, 1:])
        x = torch.cat([x[:, :1], tokens], dim=1) + self.pos_embedding
        return self.pred(self.norm(self.blocks(x))[:, 1:])
