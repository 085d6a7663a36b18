"""The method contract carries BYOL, MoCo v2 and a two-optimizer GAN: each,
written only against the public API, passes the whole conformance kit."""

from __future__ import annotations

import numpy as np
import pytest

from contract_methods import ContractPlugin, ToyBYOL, ToyGAN, ToyGroups, ToyMoCo
from featurekit.registry import register_plugin, unregister_plugin
from featurekit.testing import parametrize_method_checks, tiny, tiny_data


@pytest.fixture(autouse=True, scope="module")
def contract_plugin():
    register_plugin(ContractPlugin(), "contract-test-methods")
    yield
    unregister_plugin("contract-test-methods")


@parametrize_method_checks([ToyBYOL(), ToyMoCo(), ToyGAN(), ToyGroups()])
def test_contract_methods_conform(estimator, check):
    check(estimator)


def test_gan_alternates_two_optimizers():
    X, _ = tiny_data("image")
    est = tiny(ToyGAN(), "image").fit(X)
    assert {"loss_discriminator", "loss_generator"} <= set(est.history_)
    assert set(est.optimizer_params_) == {"discriminator", "generator"}


def test_moco_queue_moves_and_survives_pickle():
    import pickle

    X, _ = tiny_data("tabular")
    est = tiny(ToyMoCo(), "tabular").fit(X)
    queue = est.modules_["queue"]
    assert int(queue.ptr) == (2 * (len(X) // 16) * 16) % 64
    again = pickle.loads(pickle.dumps(est))
    assert np.array_equal(again.modules_["queue"].keys.numpy(), queue.keys.numpy())


def test_metadata_is_routed_in_a_pipeline_and_y_never_leaks():
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = tiny_data("tabular")
    groups = (y >= 5).astype(int)
    with sklearn.config_context(enable_metadata_routing=True):
        est = tiny(ToyGroups(), "tabular").set_fit_request(groups=True)
        pipe = make_pipeline(est, LogisticRegression().set_fit_request(sample_weight=False))
        pipe.fit(X, y, groups=groups)
    assert list(pipe[0].metadata_values_["groups"]) == [0, 1]
    direct = tiny(ToyGroups(), "tabular").fit(X, groups=groups)
    np.testing.assert_array_equal(pipe[0].transform(X), direct.transform(X))
