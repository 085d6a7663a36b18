"""Losses against straightforward reference implementations of the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch

from featurekit_contrastive.losses import nt_xent


def nt_xent_reference(z1, z2, tau):
    """SimCLR eq. (1), literally: l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t),
    averaged over all 2N ordered positive pairs."""
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sim = [torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm()) for k in range(n2)]
        denom = sum(math.exp(sim[k] / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[j] / tau) / denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_matches_the_paper(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert float(nt_xent(z1, z2, tau)) == pytest.approx(nt_xent_reference(z1, z2, tau), rel=1e-5)


def test_nt_xent_gradients_match_the_reference():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(4, 3, generator=g, dtype=torch.double, requires_grad=True)
    z2 = torch.randn(4, 3, generator=g, dtype=torch.double, requires_grad=True)
    nt_xent(z1, z2, 0.5).backward()

    def ref(a, b):
        z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
        sim = z @ z.T / 0.5
        n2 = len(z)
        terms = []
        for i in range(n2):
            j = (i + n2 // 2) % n2
            others = torch.cat([sim[i, :i], sim[i, i + 1:]])
            terms.append(-(sim[i, j] - torch.logsumexp(others, 0)))
        return torch.stack(terms).mean()

    a = z1.detach().clone().requires_grad_(True)
    b = z2.detach().clone().requires_grad_(True)
    ref(a, b).backward()
    torch.testing.assert_close(z1.grad, a.grad)
    torch.testing.assert_close(z2.grad, b.grad)
