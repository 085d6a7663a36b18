"""Losses against straightforward reference implementations of the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch

from featurekit_contrastive.losses import byol_loss, info_nce, negative_cosine, nt_xent


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


# -- MoCo, SimSiam, BYOL -------------------------------------------------------

def _unit(v):
    return v / v.norm()


def info_nce_reference(q, k, queue, tau):
    """MoCo eq. (1), literally: L_q = -log exp(q.k+/t) / (exp(q.k+/t) + sum_i exp(q.k_i/t)),
    with q and k+ L2-normalized, averaged over the queries."""
    terms = []
    for qi, ki in zip(q.double(), k.double()):
        qi, ki = _unit(qi), _unit(ki)
        pos = torch.exp(torch.dot(qi, ki) / tau)
        neg = sum(torch.exp(torch.dot(qi, kj) / tau) for kj in queue.double())
        terms.append(-torch.log(pos / (pos + neg)))
    return torch.stack(terms).mean()


def negative_cosine_reference(p, z):
    """SimSiam eq. (1): D(p, z) = -(p / ||p||) . (z / ||z||), averaged over the batch."""
    return torch.stack([-torch.dot(_unit(a), _unit(b)) for a, b in zip(p.double(), z.double())]
                       ).mean()


def byol_loss_reference(p, z):
    """BYOL eq. (2): || p / ||p|| - z / ||z|| ||^2, averaged over the batch."""
    return torch.stack([(_unit(a) - _unit(b)).pow(2).sum() for a, b in zip(p.double(), z.double())]
                       ).mean()


def _inputs(seed, n=5, d=4, n_queue=7):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    queue = torch.nn.functional.normalize(torch.randn(n_queue, d, generator=g), dim=1)
    return q, k, queue


@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
def test_info_nce_matches_the_paper(tau):
    q, k, queue = _inputs(0)
    assert float(info_nce(q, k, queue, tau)) == pytest.approx(
        float(info_nce_reference(q, k, queue, tau)), rel=1e-5)


def test_info_nce_gradients_match_the_reference():
    q, k, queue = _inputs(1)
    a, b = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    info_nce(a, b, queue, 0.2).backward()
    ra, rb = q.double().requires_grad_(True), k.double().requires_grad_(True)
    info_nce_reference(ra, rb, queue, 0.2).backward()
    torch.testing.assert_close(a.grad, ra.grad.float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.grad, rb.grad.float(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss, reference", [(negative_cosine, negative_cosine_reference),
                                             (byol_loss, byol_loss_reference)])
def test_siamese_losses_match_the_papers(loss, reference):
    p, z, _ = _inputs(2)
    assert float(loss(p, z)) == pytest.approx(float(reference(p, z)), rel=1e-5)
    assert float(loss(z, z)) == pytest.approx(float(reference(z, z)), abs=1e-6)


@pytest.mark.parametrize("loss, reference", [(negative_cosine, negative_cosine_reference),
                                             (byol_loss, byol_loss_reference)])
def test_siamese_losses_stop_the_gradient_of_the_target(loss, reference):
    p, z, _ = _inputs(3)
    a, b = p.clone().requires_grad_(True), z.clone().requires_grad_(True)
    loss(a, b).backward()
    ra = p.double().requires_grad_(True)
    reference(ra, z.double()).backward()
    torch.testing.assert_close(a.grad, ra.grad.float(), rtol=1e-4, atol=1e-6)
    assert b.grad is None, "the target must be treated as a constant (stop-gradient)"


def test_byol_loss_is_twice_the_negative_cosine_plus_two():
    p, z, _ = _inputs(4)
    assert float(byol_loss(p, z)) == pytest.approx(2 + 2 * float(negative_cosine(p, z)), rel=1e-5)
