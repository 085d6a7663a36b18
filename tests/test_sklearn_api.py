"""The user's first job: featurekit in sklearn pipelines, on real images."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import featurekit
from featurekit.datasets import load_mnist, standard_split


@pytest.fixture(scope="module")
def mnist():
    X, y = load_mnist()
    train, test = standard_split(y)
    return X[train[:600]], y[train[:600]], X[test[:300]], y[test[:300]]


@pytest.fixture(scope="module")
def fitted_pipeline(mnist):
    X, y, _, _ = mnist
    pipe = make_pipeline(
        featurekit.create("simclr", backbone="small_cnn", max_epochs=1, random_state=0,
                          verbose=0, batch_size=128),
        LogisticRegression(max_iter=500))
    return pipe.fit(X, y)


def test_pipeline_fits_and_scores_on_mnist(fitted_pipeline, mnist):
    X, y, X_test, y_test = mnist
    assert fitted_pipeline.score(X_test, y_test) > 0.2  # ten classes: chance is 0.1
    # One epoch leaves the features small (std ~0.05), which C=1 over-regularizes;
    # standardized, the same features are far better.
    scaled = make_pipeline(clone(fitted_pipeline[0]), StandardScaler(),
                           LogisticRegression(max_iter=500)).fit(X, y)
    assert scaled.score(X_test, y_test) > 0.6


def test_pickle_gives_identical_features_and_predictions(fitted_pipeline, mnist):
    _, _, X_test, _ = mnist
    simclr = fitted_pipeline[0]
    again = pickle.loads(pickle.dumps(fitted_pipeline))
    np.testing.assert_array_equal(again[0].transform(X_test), simclr.transform(X_test))
    np.testing.assert_array_equal(again.predict(X_test), fitted_pipeline.predict(X_test))


def test_joblib_round_trip(fitted_pipeline, mnist, tmp_path):
    _, _, X_test, _ = mnist
    joblib.dump(fitted_pipeline, tmp_path / "pipe.joblib")
    again = joblib.load(tmp_path / "pipe.joblib")
    np.testing.assert_array_equal(again.predict(X_test), fitted_pipeline.predict(X_test))


def test_clone_refits_to_the_same_features(fitted_pipeline, mnist):
    X, y, X_test, _ = mnist
    simclr = fitted_pipeline[0]
    again = clone(simclr).fit(X)
    assert not hasattr(clone(simclr), "modules_")
    np.testing.assert_array_equal(again.transform(X_test), simclr.transform(X_test))


def test_set_output_pandas_names_columns(fitted_pipeline, mnist):
    _, _, X_test, _ = mnist
    simclr = clone(fitted_pipeline[0])
    simclr.set_params(max_epochs=1)
    df = fitted_pipeline[0].set_output(transform="pandas").transform(X_test[:5])
    fitted_pipeline[0].set_output(transform="default")
    assert list(df.columns[:3]) == ["simclr0", "simclr1", "simclr2"]
    assert df.shape == (5, 256) and (df.dtypes == np.float32).all()


def test_grid_search_over_method_and_classifier_params():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(
        featurekit.create("simclr", backbone="mlp", backbone_kwargs={"hidden": (32,)},
                          max_epochs=1, batch_size=32, random_state=0, verbose=0),
        LogisticRegression(max_iter=300))
    search = GridSearchCV(pipe, {"simclr__temperature": [0.2, 0.5],
                                 "logisticregression__C": [1.0]}, cv=2).fit(X[:300], y[:300])
    assert [p["simclr__temperature"] for p in search.cv_results_["params"]] == [0.2, 0.5]
    assert search.best_estimator_[0].temperature in (0.2, 0.5)


def test_parameter_errors_read_like_sklearn():
    X, _ = load_digits(return_X_y=True)
    with pytest.raises(ValueError, match="The 'temperature' parameter of SimCLR must be a float "
                                         "in the range \\(0.0, inf\\). Got -1 instead."):
        featurekit.create("simclr", backbone="mlp", temperature=-1).fit(X)


def test_init_stores_params_verbatim():
    kwargs = {"hidden": (8,)}
    est = featurekit.create("simclr", backbone="mlp", backbone_kwargs=kwargs, lr=0.1)
    assert est.backbone_kwargs is kwargs and est.lr == 0.1
    assert est.get_params()["backbone"] == "mlp"


def test_supervised_is_a_classifier_with_probabilities():
    X, y = load_digits(return_X_y=True)
    clf = featurekit.create("supervised", backbone="mlp", max_epochs=5, batch_size=64,
                            random_state=0, verbose=0).fit(X[:1200], y[:1200])
    assert clf.score(X[1200:], y[1200:]) > 0.85
    proba = clf.predict_proba(X[1200:1210])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert list(clf.classes_) == list(range(10))
    assert clf.transform(X[:3]).shape == (3, 256)


def test_export_backbone_loads_into_torchvision(tmp_path):
    import torch
    import torchvision

    # Above 64 px the original stem is kept, so even the shapes match torchvision's.
    X = (np.random.default_rng(0).random((4, 72, 72, 3)) * 255).astype(np.uint8)
    est = featurekit.create("pretrained", backbone="resnet18", random_state=0).fit(X)
    est.export_backbone(tmp_path / "resnet18.pt")
    state = torch.load(tmp_path / "resnet18.pt", weights_only=True)
    missing, unexpected = torchvision.models.resnet18().load_state_dict(state, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected


def test_save_is_weights_only_and_refuses_other_files(tmp_path):
    import torch

    X, _ = load_digits(return_X_y=True)
    est = featurekit.create("simclr", backbone="mlp", max_epochs=1, random_state=0,
                            verbose=0).fit(X[:100])
    est.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["method"] == "simclr" and payload["plugin"] == "featurekit"
    np.testing.assert_array_equal(featurekit.load(tmp_path / "m.pt").transform(X[:10]),
                                  est.transform(X[:10]))
    torch.save({"a": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a featurekit model file"):
        featurekit.load(tmp_path / "plain.pt")


def test_save_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    import torch

    X, _ = load_digits(return_X_y=True)
    est = featurekit.create("pretrained", backbone="mlp", random_state=0).fit(X[:20])
    est.save(tmp_path / "m.pt")
    before = (tmp_path / "m.pt").read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        est.save(tmp_path / "m.pt")
    assert (tmp_path / "m.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_fitted_modules_are_left_in_eval_mode():
    # A frozen Pretrained backbone must not update batch-norm statistics when the
    # user runs est.backbone_ on their own tensors after fit.
    X, _ = load_digits(return_X_y=True)
    for name in ("pretrained", "simclr"):
        est = featurekit.create(name, backbone="mlp", max_epochs=1, random_state=0,
                                verbose=0).fit(X[:64])
        assert not est.modules_.training and not est.backbone_.training
        est.transform(X[:8])
        assert not est.backbone_.training
