"""featurekit-vicreg's tests: featurekit's conformance kit, the loss against the
paper's formulas written out, and small fits.

Run them against an installed copy (``pip install -e .[test]``, then ``pytest``).
The ``featurekit_check`` fixture comes from featurekit's pytest plugin, which
pytest loads by itself once featurekit is installed.
"""

from __future__ import annotations

import doctest
import importlib.metadata
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import featurekit
import featurekit_vicreg
from featurekit.method import BuildSpec
from featurekit.testing import parametrize_method_checks
from featurekit_vicreg import VICReg, vicreg_loss
from featurekit_vicreg.loss import covariance, invariance, variance
from featurekit_vicreg.vicreg import expander

TABULAR = dict(backbone="mlp", backbone_kwargs={"hidden": (32,)}, expander_dim=64,
               batch_size=64, device="cpu", random_state=0, verbose=0)


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)[0][:256]


# -- featurekit's conformance kit ------------------------------------------------

@parametrize_method_checks([VICReg()])
def test_vicreg_conforms(estimator, check):
    check(estimator)


def test_another_configuration_conforms(featurekit_check):
    # The defaults run above, one test per check; this runs the whole kit on
    # the other branches of build and views (a 1-layer expander, blurred views).
    featurekit_check(VICReg(expander_dim=16, expander_layers=1, blur=True, cov_coeff=0.5))


# -- the loss against eq. (1)-(6), written out ---------------------------------------

def reference_loss(z1, z2, lam, mu, nu, gamma=1.0, eps=1e-4):
    """The paper's eq. (1)-(6) with loops, in float64, with the normalisations of the
    authors' code: s averaged over samples and dimensions, v averaged over branches."""
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape

    def v(z):
        total = 0
        for j in range(d):
            mean = sum(z[i, j] for i in range(n)) / n
            var = sum((z[i, j] - mean) ** 2 for i in range(n)) / (n - 1)
            total = total + torch.clamp(gamma - torch.sqrt(var + eps), min=0)
        return total / d

    def c(z):
        means = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        total = 0
        for a in range(d):
            for b in range(d):
                if a != b:
                    cov = sum((z[i, a] - means[a]) * (z[i, b] - means[b]) for i in range(n))
                    total = total + (cov / (n - 1)) ** 2
        return total / d

    s = sum((z1[i, k] - z2[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)
    return lam * s + mu * (v(z1) + v(z2)) / 2 + nu * (c(z1) + c(z2))


def embeddings(seed, dtype=torch.float32):
    """Two (6, 4) embeddings whose dimensions have std below and above gamma=1."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.3, 0.8, 1.5, 3.0], dtype=dtype)
    return (torch.randn(6, 4, generator=g, dtype=dtype) * scale,
            torch.randn(6, 4, generator=g, dtype=dtype) * scale)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                                    (0.0, 0.0, 1.0)])
def test_loss_matches_the_paper(coeffs):
    z1, z2 = embeddings(0)
    got = float(vicreg_loss(z1, z2, *coeffs).loss)
    assert got == pytest.approx(float(reference_loss(z1, z2, *coeffs)), rel=1e-5)


def test_loss_gradients_match_the_reference():
    z1, z2 = (z.requires_grad_(True) for z in embeddings(1, torch.float64))
    vicreg_loss(z1, z2, 25.0, 25.0, 1.0).loss.backward()
    a, b = (z.detach().clone().requires_grad_(True) for z in (z1, z2))
    reference_loss(a, b, 25.0, 25.0, 1.0).backward()
    torch.testing.assert_close(z1.grad, a.grad)
    torch.testing.assert_close(z2.grad, b.grad)


def test_invariance_is_zero_for_identical_views():
    z = torch.randn(8, 5)
    assert float(invariance(z, z)) == 0.0
    assert float(vicreg_loss(z, z).invariance) == 0.0
    assert float(invariance(z, z + 0.5)) == pytest.approx(0.25)


def test_variance_is_zero_when_every_std_reaches_gamma():
    z = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    z = (z - z.mean(0)) / z.std(0)  # every dimension's std exactly 1
    assert float(variance(z)) == 0.0
    assert float(variance(2 * z)) == 0.0
    # Collapsed dimensions: each contributes gamma - sqrt(eps).
    assert float(variance(torch.ones(32, 6))) == pytest.approx(1 - math.sqrt(1e-4))
    # Half the dimensions at std 0.5, half at 2: the hinge counts only the first half.
    mixed = torch.cat([0.5 * z[:, :3], 2 * z[:, 3:]], dim=1)
    assert float(variance(mixed)) == pytest.approx((1 - math.sqrt(0.25 + 1e-4)) / 2, rel=1e-5)


def test_covariance_is_zero_for_decorrelated_dimensions():
    # Columns 1-3 of a 4x4 Hadamard matrix: zero mean and mutually orthogonal.
    hadamard = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    z = hadamard[:, 1:].repeat(4, 1) * torch.tensor([1.0, 3.0, 0.2])
    assert float(covariance(z)) == pytest.approx(0.0, abs=1e-7)
    correlated = torch.cat([z[:, :1], z[:, :1]], dim=1)
    assert float(covariance(correlated)) > 0


def test_variance_and_covariance_use_the_gathered_batch():
    z1, z2 = embeddings(2)
    other1, other2 = embeddings(3)  # what a second process would hold
    gathered = {id(z1): other1, id(z2): other2}
    out = vicreg_loss(z1, z2, all_gather=lambda t: torch.cat([t, gathered[id(t)]]))
    full = vicreg_loss(torch.cat([z1, other1]), torch.cat([z2, other2]))
    assert float(out.variance) == pytest.approx(float(full.variance))
    assert float(out.covariance) == pytest.approx(float(full.covariance))
    assert float(out.invariance) == pytest.approx(float(invariance(z1, z2)))  # stays local


def test_loss_is_float32_under_bf16_autocast():
    z1, z2 = embeddings(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vicreg_loss(z1.bfloat16(), z2.bfloat16())
    assert out.loss.dtype == torch.float32


def test_loss_rejects_a_batch_of_one_and_mismatched_views():
    with pytest.raises(ValueError, match="at least 2"):
        vicreg_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        vicreg_loss(torch.randn(4, 4), torch.randn(4, 3))


# -- the estimator ---------------------------------------------------------------

def test_expander_is_the_papers_shape():
    layers = list(expander(8, 16, 3))
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert layers[-1].bias is None and layers[0].in_features == 8
    assert [type(m).__name__ for m in expander(8, 16, 1)] == ["Linear"]


def spec(modality, shape):
    return BuildSpec(modality=modality, input_shape=shape, n_samples=64, backbone_dim=8,
                     make_backbone=lambda: torch.nn.Identity())


def test_views_come_from_the_augmentation_registry():
    first, second = VICReg().views(spec("image", (1, 8, 8)))
    assert "RandomSolarize" not in repr(first) and "p=0.2" in repr(second)
    assert "GaussianBlur" not in repr(first)  # blur="auto" at 8 px
    first, second = VICReg().views(spec("image", (3, 64, 64)))
    assert "GaussianBlur" in repr(first) and "GaussianBlur" not in repr(second)
    views = VICReg(corruption_rate=0.3).views(spec("tabular", (16,)))
    assert [repr(v) for v in views] == ["FeatureCorruption(rate=0.3, noise_std=0.0)"] * 2


def test_fit_lowers_the_loss_and_logs_its_terms(digits):
    # Milder corruption and a higher learning rate than the defaults, so that
    # 40 steps make clear progress (about 20.5 -> 17 here, for any seed).
    est = VICReg(**{**TABULAR, "batch_size": 32, "max_epochs": 5, "lr": 5e-3,
                    "corruption_rate": 0.3}).fit(digits)
    loss = est.history_["loss"]
    assert loss[-1] < loss[0] - 1, loss
    for term in ("invariance", "variance", "covariance"):
        assert len(est.history_[term]) == 5 and np.isfinite(est.history_[term]).all()


def test_transform_returns_backbone_features_not_the_expander(digits):
    Z = VICReg(**{**TABULAR, "max_epochs": 1}).fit_transform(digits)
    assert Z.shape == (len(digits), 32) and Z.dtype == np.float32  # the mlp's width, not 64


def test_random_state_makes_fits_reproducible(digits):
    a, b, c = (VICReg(**{**TABULAR, "max_epochs": 2, "random_state": seed}).fit_transform(digits)
               for seed in (0, 0, 1))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("param, value", [
    ("sim_coeff", -1.0), ("std_coeff", "high"), ("cov_coeff", None), ("expander_dim", 0),
    ("expander_layers", 1.5), ("crop_min_scale", 0.0), ("blur", "yes"), ("corruption_rate", 2.0),
])
def test_bad_parameters_are_named(param, value, digits):
    with pytest.raises(ValueError, match=f"'{param}' parameter of VICReg"):
        VICReg(**{**TABULAR, param: value}).fit(digits)


# -- the plugin ------------------------------------------------------------------

def installed():
    eps = importlib.metadata.entry_points(group="featurekit.plugins", name="vicreg")
    return any(ep.dist is not None and ep.dist.name == "featurekit-vicreg" for ep in eps)


@pytest.mark.skipif(not installed(), reason="featurekit-vicreg is not installed "
                    "(pip install -e .), so its entry point is not visible")
def test_registered_through_the_entry_point_without_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        featurekit.reload_plugins()
    ours = [str(w.message) for w in caught if "featurekit-vicreg" in str(w.message)]
    assert not ours, ours
    (row,) = featurekit.list_methods("vicreg")
    assert row == {"name": "vicreg", "family": "contrastive",
                   "distribution": "featurekit-vicreg", "version": featurekit_vicreg.__version__}
    assert type(featurekit.create("vicreg", max_epochs=1)) is VICReg


def test_docstring_examples():
    for module in (featurekit_vicreg.loss, featurekit_vicreg.vicreg):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"{module.__name__}: {result.failed} doctest(s) failed"
