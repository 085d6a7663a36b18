"""The adversarial losses: non-saturating GAN (Goodfellow et al. 2014) and LSGAN (Mao et al. 2017).

Both are written as one function, :func:`adversarial_loss`, the loss of
pushing a discriminator's outputs towards "real" or towards "fake":

- ``"nonsaturating"``: binary cross-entropy on logits; the generator side
  uses ``-log D(G(z))`` (Goodfellow et al.'s non-saturating heuristic),
  that is the cross-entropy towards "real".
- ``"lsgan"``: the least-squares loss with targets 1 (real) and 0 (fake),
  LSGAN's 0-1-1 coding, as CycleGAN uses it.

A discriminator's loss is half the sum over a real and a fake batch
(:func:`discriminator_loss`), as in CycleGAN's reference code.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

LOSSES = ("nonsaturating", "lsgan")


def adversarial_loss(logits: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    """Mean loss of pushing ``logits`` (any shape: PatchGAN maps too) towards real or fake.

    Examples
    --------
    >>> import torch
    >>> round(float(adversarial_loss(torch.zeros(4), True, "nonsaturating")), 4)  # log 2
    0.6931
    >>> float(adversarial_loss(torch.ones(2, 1, 3, 3), True, "lsgan"))
    0.0
    """
    logits = logits.float()
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       kind: str) -> torch.Tensor:
    """Half the sum of the losses of calling real samples real and fake ones fake."""
    return 0.5 * (adversarial_loss(real_logits, True, kind)
                  + adversarial_loss(fake_logits, False, kind))
