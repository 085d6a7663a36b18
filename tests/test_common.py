"""Every registered method: scikit-learn's estimator checks (where tabular input
applies) and featurekit's conformance kit, each in the kit's tiny configuration.

No sklearn check is expected to fail: check_methods_subset_invariance passes
too, since embedding runs with eval-mode batch norm."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import featurekit
from featurekit.registry import get_registry
from featurekit.testing import parametrize_method_checks

METHODS = sorted(get_registry().methods)

def sklearn_tiny(name: str):
    """The kit's tiny tabular configuration; Supervised gets enough epochs to pass the
    classifier checks (accuracy above 0.83 on sklearn's blobs)."""
    epochs = 15 if get_registry().methods[name].cls.y_usage == "target" else 2
    return featurekit.create(
        name, backbone="mlp", backbone_kwargs={"hidden": (32,)}, batch_size=16,
        max_epochs=epochs, device="cpu", random_state=0, verbose=0)


TABULAR = [sklearn_tiny(n) for n in METHODS if "tabular" in get_registry().methods[n].cls.modalities]


@parametrize_with_checks(TABULAR)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@parametrize_method_checks([featurekit.create(n) for n in METHODS])
def test_conformance(estimator, check):
    check(estimator)


def test_every_method_is_checked():
    assert {"supervised", "pretrained", "simclr"} <= set(METHODS)
    assert all(isinstance(est, featurekit.FeatureExtractor) for est in TABULAR)


@pytest.mark.parametrize("name", METHODS)
def test_method_resolves_lazily_by_class_name(name):
    cls = get_registry().methods[name].cls
    assert getattr(featurekit, cls.__name__) is cls
