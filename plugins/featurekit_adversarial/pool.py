"""CycleGAN's history of generated images (Shrivastava et al. 2017; Zhu et al. 2017, sec. 4).

The discriminators are updated with generated images drawn from a pool of
the last ``size`` ones rather than only the newest, which damps the
oscillation between generator and discriminator.
"""

from __future__ import annotations

import torch
from torch import nn


class ImagePool(nn.Module):
    """A pool of up to ``size`` generated images, kept as buffers.

    The images and the fill count are registered buffers, so ``save``,
    pickling and checkpoints carry the pool, and a resumed fit continues
    with the pool it had. Random draws come from torch's global RNG, which
    the core seeds and checkpoints.

    Parameters
    ----------
    size : int
        Images kept; 0 disables the pool (``query`` returns its input).
    shape : tuple of int
        ``(C, H, W)`` of one image.

    Examples
    --------
    >>> import torch
    >>> pool = ImagePool(2, (1, 4, 4))
    >>> out = pool.query(torch.zeros(3, 1, 4, 4))
    >>> out.shape, int(pool.count)
    (torch.Size([3, 1, 4, 4]), 2)
    """

    def __init__(self, size: int, shape: tuple[int, ...]):
        super().__init__()
        self.size = int(size)
        self.register_buffer("images", torch.zeros(self.size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The batch the discriminator sees in place of ``images`` (which join the pool).

        While the pool is filling, images are stored and returned as they
        are. Once it is full, each image is, with probability 1/2, swapped
        with a random stored one (the stored one is returned, the new one
        kept), and otherwise returned as it is. The swaps of one batch are
        drawn together: two images drawn to the same slot both return the
        slot's old image, and the later one is kept.
        """
        if self.size == 0:
            return images
        images = images.detach().to(self.images.dtype)
        out = images.clone()
        free = min(self.size - int(self.count), len(images))
        if free > 0:
            start = int(self.count)
            self.images[start:start + free] = images[:free]
            self.count += free
        rest = images[free:]
        if len(rest):
            swap = torch.rand(len(rest), device=images.device) < 0.5
            slot = torch.randint(0, self.size, (len(rest),), device=images.device)
            old = self.images[slot]
            out[free:] = torch.where(swap.view(-1, 1, 1, 1), old, rest)
            self.images[slot[swap]] = rest[swap]
        return out
