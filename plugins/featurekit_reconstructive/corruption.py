"""The denoising autoencoder's input corruption, as a batched on-device view."""

from __future__ import annotations

import torch


class Corruption:
    """Masking noise and additive Gaussian noise, drawn per sample on the device.

    Masking sets each input dimension to zero with probability ``mask_prob``
    (Vincent et al. 2008): a pixel, in all its channels at once, or a
    standardized column, whose zero is the column mean. Gaussian noise of
    standard deviation ``noise_std`` is added after it (Vincent et al. 2010),
    in pixel units (images in [0, 1]) or in standard deviations (tables).

    Parameters
    ----------
    noise_std : float
        Standard deviation of the additive noise; 0 for none.
    mask_prob : float
        Probability that an input dimension is masked; 0 for none.

    Examples
    --------
    >>> corrupt = Corruption(noise_std=0.0, mask_prob=0.5)
    >>> x = torch.ones(2, 3, 8, 8)
    >>> out = corrupt(x, torch.Generator().manual_seed(0))
    >>> out.shape, bool((out[:, 0] == out[:, 1]).all())  # channels masked together
    (torch.Size([2, 3, 8, 8]), True)
    """

    def __init__(self, noise_std: float, mask_prob: float):
        self.noise_std, self.mask_prob = float(noise_std), float(mask_prob)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.mask_prob > 0:
            shape = (x.shape[0], 1, *x.shape[2:]) if x.ndim == 4 else x.shape
            keep = torch.rand(shape, generator=generator, device=x.device) >= self.mask_prob
            x = x * keep
        if self.noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + self.noise_std * noise
        return x

    def __repr__(self) -> str:
        return f"Corruption(noise_std={self.noise_std}, mask_prob={self.mask_prob})"
