"""Small Vision Transformers (ViT-Tiny, ViT-Small) on torchvision's implementation.

torchvision has no pretrained weights at these sizes, so they always start
from scratch. The patch size follows the image size, so that small images
still give a useful number of tokens.

References
----------
.. [1] Dosovitskiy et al. "An Image is Worth 16x16 Words: Transformers for
   Image Recognition at Scale". ICLR 2021.
.. [2] Touvron et al. "Training data-efficient image transformers &
   distillation through attention". ICML 2021 (the Tiny and Small sizes).
"""

from __future__ import annotations

import math

from torch import nn
from torchvision.models import VisionTransformer

from featurekit.backbones._common import check_int, no_pretrained, strict_kwargs
from featurekit.exceptions import ParameterError

# (num_layers, num_heads, hidden_dim, mlp_dim) as in DeiT.
SIZES = {
    "vit_tiny": (12, 3, 192, 768),
    "vit_small": (12, 6, 384, 1536),
}

# Images of at most 16 px get 2 px patches; one patch is the least a ViT takes.
MIN_INPUT_SIZE = 2


def default_patch_size(input_size: int, small_stem: bool) -> int:
    """The patch size used for ``input_size`` px images (2, 4 or 16)."""
    if not small_stem:
        return 16
    return 2 if input_size <= 16 else 4


@strict_kwargs
def vit(arch: str, *, in_channels: int = 3, input_size: int = 224, small_stem: bool = False,
        weights: str | None = None, patch_size: int | None = None,
        num_layers: int | None = None, num_heads: int | None = None,
        hidden_dim: int | None = None, mlp_dim: int | None = None) -> VisionTransformer:
    """Build a torchvision ``VisionTransformer`` returning its class-token features.

    Parameters
    ----------
    arch : {"vit_tiny", "vit_small"}
        The size (bound by the registry).
    in_channels : int, default=3
        Channels of the input images; another value than 3 replaces the patch
        projection ``conv_proj``.
    input_size : int, default=224
        Side of the square input images. The model takes
        ``input_size`` rounded up to a multiple of the patch size, exposed as
        its ``input_size`` attribute.
    small_stem : bool, default=False
        Use small patches: 4 px, or 2 px for images of at most 16 px, instead
        of 16 px.
    weights : None, default=None
        Accepted for the common factory contract; there are no pretrained
        weights.
    patch_size : int or None, default=None
        Override the patch size chosen from ``input_size`` and ``small_stem``.
    num_layers, num_heads, hidden_dim, mlp_dim : int or None, default=None
        Override the size of ``arch`` (depth, attention heads, token width,
        MLP width), e.g. a 2-layer, 64-d ViT for quick CPU runs and tests.
        ``hidden_dim`` must be a multiple of ``num_heads``.

    Returns
    -------
    torchvision.models.VisionTransformer
        ``forward`` maps ``(n, in_channels, input_size, input_size)`` to
        ``(n, out_features)``; ``out_features`` is ``hidden_dim``: 192 (tiny) or 384
        (small) unless overridden.
    """
    in_channels = check_int(in_channels, "in_channels", arch)
    input_size = check_int(input_size, "input_size", arch)
    if patch_size is None:
        patch_size = default_patch_size(input_size, small_stem)
    patch_size = check_int(patch_size, "patch_size", arch)
    no_pretrained(arch, weights)
    given = {"num_layers": num_layers, "num_heads": num_heads, "hidden_dim": hidden_dim,
             "mlp_dim": mlp_dim}
    num_layers, num_heads, hidden_dim, mlp_dim = (
        default if value is None else check_int(value, name, arch)
        for (name, value), default in zip(given.items(), SIZES[arch]))
    if hidden_dim % num_heads:
        raise ParameterError(
            f"The 'hidden_dim' parameter of backbone {arch!r} must be a multiple of "
            f"num_heads={num_heads}. Got {hidden_dim} instead.")
    image_size = math.ceil(input_size / patch_size) * patch_size
    model = VisionTransformer(image_size, patch_size, num_layers=num_layers,
                              num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim)
    if in_channels != 3:
        model.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size,
                                    stride=patch_size)
        # torchvision's own initialisation of the patch projection.
        fan_in = in_channels * patch_size * patch_size
        nn.init.trunc_normal_(model.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(model.conv_proj.bias)
    model.heads = nn.Identity()
    model.out_features = hidden_dim
    # The core resizes every batch to this side, the only one the model accepts.
    model.input_size = image_size
    return model
