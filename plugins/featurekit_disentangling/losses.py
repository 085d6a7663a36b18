"""ContentStyle's training signals, each with the paper it follows.

- :func:`reconstruction_loss`: L1 between an input and its decoding (AdaIN-VC,
  Chou et al. 2019).
- :func:`same_group_partners`: for every sample, another sample of its group
  in the batch, whose style code must serve to rebuild it (the within-speaker
  style swap of Chou et al. 2018).
- the adversarial group critic (Ganin et al. 2016; Chou et al. 2018) is a
  cross-entropy on the content code that the critic minimizes and the
  encoder maximizes; :func:`critic_accuracy` is its running read-out.
"""

from __future__ import annotations

import torch


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, in the model space both live in.

    Examples
    --------
    >>> float(reconstruction_loss(torch.zeros(2, 3), torch.ones(2, 3)))
    1.0
    """
    return (output.float() - target.float()).abs().mean()


def same_group_partners(groups: torch.Tensor) -> torch.Tensor:
    """For each sample, the index of a random other sample of its group in the batch.

    Samples are shuffled within their group (a random sort key per sample,
    from torch's global generator) and each takes the next one in its group,
    cyclically; a sample alone in its group in the batch is its own partner.
    Batched, without a Python loop over samples.

    Parameters
    ----------
    groups : Tensor of shape (n,), int64
        The group code of each sample.

    Returns
    -------
    Tensor of shape (n,), int64

    Examples
    --------
    >>> g = torch.tensor([0, 1, 0, 1, 1, 2])
    >>> p = same_group_partners(g)
    >>> bool((g[p] == g).all()), bool((p[:5] != torch.arange(5)).all()), int(p[5])
    (True, True, 5)
    """
    n = len(groups)
    key = groups.double() + torch.rand(n, device=groups.device, dtype=torch.float64) * 0.5
    order = torch.argsort(key)
    sorted_groups = groups[order]
    position = torch.arange(n, device=groups.device)
    first = torch.ones(n, dtype=torch.bool, device=groups.device)
    first[1:] = sorted_groups[1:] != sorted_groups[:-1]
    start = torch.cummax(torch.where(first, position, torch.zeros_like(position)), dim=0).values
    last = torch.ones(n, dtype=torch.bool, device=groups.device)
    last[:-1] = first[1:]
    following = torch.where(last, start, position + 1)
    partners = torch.empty_like(order)
    partners[order] = order[following]
    return partners


def critic_accuracy(logits: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The fraction of the batch whose group the critic guesses right."""
    return (logits.argmax(dim=1) == groups).float().mean()
