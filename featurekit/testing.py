"""The conformance kit: checks every method plugin must pass.

Like scikit-learn's ``check_estimator``, for featurekit methods::

    from featurekit.testing import check_method
    check_method(MyMethod())                 # raises AssertionError on the first failure

    # or one pytest test per check:
    from featurekit.testing import parametrize_method_checks

    @parametrize_method_checks([MyMethod()])
    def test_my_method(estimator, check):
        check(estimator)

Each check fits a tiny configuration of the estimator (:func:`tiny`) on small
real data (scikit-learn's embedded digits) on the CPU, so the whole kit runs
in seconds per method. Failure messages say what to fix.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from featurekit.base import COMMON_PARAMS, FeatureExtractor
from featurekit.hookspecs import hookimpl

#: Parameters a method may give its own default (documented in its docstring).
OWN_DEFAULTS = {"max_epochs", "batch_size", "inference_batch_size"}


@dataclass
class CheckResult:
    """The outcome of one check: its name, whether it passed, and why not."""

    name: str
    passed: bool
    message: str = ""


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:48].astype(np.float64), y[:48]


def tiny_data(modality: str) -> tuple[Any, np.ndarray]:
    """48 samples of sklearn's digits: (48, 64) rows, or (48, 8, 8) uint8 images."""
    X, y = _digits()
    if modality == "image":
        return np.clip(X.reshape(-1, 8, 8) * 16, 0, 255).astype(np.uint8), y
    return X, y


def tiny(estimator: FeatureExtractor, modality: str = "image") -> FeatureExtractor:
    """A clone configured to be fast: tiny backbone, 2 epochs, batch 16, CPU, seeded.

    The backbone is a 4-channel ``small_cnn`` for images and a 32-unit ``mlp``
    for tables, unless the method's class declares its own small
    configuration in ``tiny_params = {modality: {param: value}}`` (MAE needs a
    ViT, say); those parameters replace the defaults for that modality.
    """
    backbone, kwargs = ("small_cnn", {"width": 4}) if modality == "image" else ("mlp", {"hidden": (32,)})
    own = getattr(type(estimator), "tiny_params", {}).get(modality, {})
    return clone(estimator).set_params(**{
        "backbone": backbone, "backbone_kwargs": kwargs, **own, "max_epochs": 2,
        "batch_size": 16, "device": "cpu", "random_state": 0, "verbose": 0, "num_workers": 0,
        "checkpoint_dir": None})


def _fit(est: FeatureExtractor, X: Any, y: Any) -> FeatureExtractor:
    if est.y_usage == "target":
        return est.fit(X, y)
    if est.y_usage == "metadata":
        meta = {name: np.asarray(y) % 2 for name in est.metadata_args}
        return est.fit(X, **meta)
    return est.fit(X)


# -- the checks ---------------------------------------------------------------

def check_contract(est: FeatureExtractor) -> None:
    """Class attributes, hooks and ``__init__`` follow featurekit's contract."""
    from featurekit.method import check_method_class

    check_method_class(type(est))
    sig = inspect.signature(type(est).__init__)
    params = list(sig.parameters.values())[1:]
    for i, p in enumerate(params):
        assert p.kind is not p.VAR_KEYWORD and p.kind is not p.VAR_POSITIONAL, (
            f"{type(est).__name__}.__init__ takes *args/**kwargs; list every parameter explicitly "
            "so get_params/clone/GridSearchCV see it")
        assert p.default is not p.empty, f"parameter {p.name!r} needs a default value"
        assert i == 0 or p.kind is p.KEYWORD_ONLY, (
            f"parameter {p.name!r} must be keyword-only (put '*' after the first parameter)")
    names = {p.name for p in params}
    missing = [k for k in COMMON_PARAMS if k not in names]
    assert not missing, f"__init__ lacks the common parameters {missing} (featurekit.base.COMMON_PARAMS)"
    assert params and params[0].name == "backbone", "the first parameter must be 'backbone'"
    for key, default in COMMON_PARAMS.items():
        if key not in OWN_DEFAULTS:
            got = sig.parameters[key].default
            assert got == default, f"common parameter {key!r} defaults to {got!r}; expected {default!r}"


def check_sklearn_conventions(est: FeatureExtractor) -> None:
    """``__init__`` stores parameters verbatim; clone and get/set_params round-trip."""
    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    name = type(est).__name__
    check_no_attributes_set_in_init(name, est)
    check_parameters_default_constructible(name, est)
    check_get_params_invariance(name, est)
    check_set_params(name, clone(est))
    assert clone(est).get_params() == est.get_params(), "clone changed the parameters"


def check_not_fitted(est: FeatureExtractor) -> None:
    """``transform`` before ``fit`` raises sklearn's NotFittedError."""
    X, _ = tiny_data(est.modalities[0] if est.modalities[0] != "audio" else "tabular")
    try:
        clone(est).transform(X)
    except NotFittedError:
        return
    raise AssertionError("transform before fit must raise sklearn.exceptions.NotFittedError; "
                         "start transform with check_is_fitted(self)")


def _check_fit_transform(est: FeatureExtractor, modality: str) -> None:
    X, y = tiny_data(modality)
    model = tiny(est, modality)
    before = set(vars(model))
    assert _fit(model, X, y) is model, "fit must return self"
    new = [k for k in set(vars(model)) - before if not k.endswith("_") and not k.startswith("_")]
    assert not new, f"fit set public attributes {new} whose names do not end in '_'"
    Z = model.transform(X)
    width = sum(s.stop - s.start for s in model.feature_parts_.values())
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float32, "transform must return float32 ndarray"
    assert Z.shape == (len(X), width), f"transform returned {Z.shape}; expected {(len(X), width)}"
    assert np.isfinite(Z).all(), "transform returned NaN or inf"
    assert len(model.get_feature_names_out()) == width, "get_feature_names_out has the wrong length"
    for key, values in model.history_.items():
        assert np.isfinite(values).all(), f"history_[{key!r}] has non-finite values: {values}"
    if model.optimizers(model.modules_):
        assert any(k.startswith("loss") for k in model.history_), "no loss recorded in history_"


def check_fit_transform_image(est: FeatureExtractor) -> None:
    """Fits on tiny images; transform gives finite float32 (n, d); fitted names end in '_'."""
    _check_fit_transform(est, "image")


def check_fit_transform_tabular(est: FeatureExtractor) -> None:
    """Fits on a tiny table; transform gives finite float32 (n, d); fitted names end in '_'."""
    _check_fit_transform(est, "tabular")


def _modality(est: FeatureExtractor) -> str:
    return "image" if "image" in est.modalities else "tabular"


def check_determinism(est: FeatureExtractor) -> None:
    """Two CPU fits with the same ``random_state`` give bit-identical features."""
    modality = _modality(est)
    X, y = tiny_data(modality)
    a = _fit(tiny(est, modality), X, y).transform(X)
    b = _fit(tiny(est, modality), X, y).transform(X)
    assert np.array_equal(a, b), ("two fits with random_state=0 differ; draw all randomness from "
                                  "torch's global RNG or the augmentation generator, never from "
                                  "Python's random or an unseeded numpy RNG")


def check_y_usage(est: FeatureExtractor) -> None:
    """``y`` is ignored, required or routed as ``y_usage`` declares."""
    modality = _modality(est)
    X, y = tiny_data(modality)
    if est.y_usage == "ignored":
        a = tiny(est, modality).fit(X).transform(X)
        b = tiny(est, modality).fit(X, y).transform(X)
        assert np.array_equal(a, b), "y_usage='ignored', but fit(X, y) differs from fit(X)"
    elif est.y_usage == "target":
        try:
            tiny(est, modality).fit(X)
        except ValueError as exc:
            assert "y" in str(exc), f"the error for a missing y should mention y: {exc}"
        else:
            raise AssertionError("y_usage='target', but fit(X) without y did not raise ValueError")
    else:
        try:
            tiny(est, modality).fit(X, y)
        except ValueError as exc:
            named = [m for m in est.metadata_args if m in str(exc)]
            assert named, f"the error for missing metadata should name {est.metadata_args}: {exc}"
        else:
            raise AssertionError(f"y_usage='metadata', but fit(X, y) without {est.metadata_args} "
                                 "did not raise ValueError")


def check_pickle_roundtrip(est: FeatureExtractor) -> None:
    """``pickle.loads(pickle.dumps(est)).transform(X)`` equals ``est.transform(X)``."""
    modality = _modality(est)
    X, y = tiny_data(modality)
    model = _fit(tiny(est, modality), X, y)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.transform(X), model.transform(X)), "pickle round trip changed features"


def check_save_load(est: FeatureExtractor) -> None:
    """``est.save``/``featurekit.load`` round-trip; the file loads with ``weights_only=True``."""
    from featurekit.persistence import load

    modality = _modality(est)
    X, y = tiny_data(modality)
    model = _fit(tiny(est, modality), X, y)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        model.save(path)
        torch.load(path, weights_only=True)
        again = load(path)
    assert type(again) is type(model), f"load returned {type(again).__name__}"
    assert np.array_equal(again.transform(X), model.transform(X)), "save/load changed features"


def check_batch_invariance(est: FeatureExtractor) -> None:
    """``transform`` does not depend on ``inference_batch_size`` (rtol 1e-5)."""
    modality = _modality(est)
    X, y = tiny_data(modality)
    model = _fit(tiny(est, modality), X, y)
    ref = model.transform(X)
    for bs in (1, 7):
        got = model.set_params(inference_batch_size=bs).transform(X)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=(
            f"features change with inference_batch_size={bs}; embed must process samples "
            "independently (eval-mode batch norm, no batch statistics)"))


def check_optimizer_coverage(est: FeatureExtractor) -> None:
    """Every trainable parameter is in exactly one optimizer; the rest are frozen."""
    modality = _modality(est)
    X, y = tiny_data(modality)
    model = _fit(tiny(est, modality).set_params(max_epochs=0), X, y)
    modules = model.modules_
    owner: dict[int, str] = {}
    for name, spec in model.optimizers(modules).items():
        for g in spec.params:
            for p in (g["params"] if isinstance(g, dict) else [g]):
                assert id(p) not in owner, f"a parameter is in both {owner[id(p)]!r} and {name!r}"
                owner[id(p)] = name
    for pname, p in modules.named_parameters():
        if id(p) not in owner:
            assert not p.requires_grad, (f"parameter {pname!r} is trainable but in no optimizer; "
                                         "add it to one or set requires_grad=False")


def check_momentum_modules(est: FeatureExtractor) -> None:
    """Momentum (EMA) modules get no gradient but move during training."""
    if not est.momentum_modules:
        return
    modality = _modality(est)
    X, y = tiny_data(modality)
    start = _fit(tiny(est, modality).set_params(max_epochs=0), X, y).modules_
    end = _fit(tiny(est, modality).set_params(max_epochs=1), X, y).modules_
    for key in est.momentum_modules:
        for (name, p0), p1 in zip(start[key].named_parameters(), end[key].parameters()):
            assert p1.grad is None, f"momentum module {key!r} parameter {name!r} received a gradient"
        moved = any(not torch.equal(a, b) for a, b in zip(start[key].parameters(),
                                                           end[key].parameters()))
        assert moved, f"momentum module {key!r} did not move during training (EMA update missing?)"


class _StopAfter:
    """A run-time plugin that interrupts a fit at the end of an epoch, like Ctrl-C."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    @hookimpl
    def featurekit_on_epoch_end(self, estimator: Any, epoch: int, history: dict) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def check_resume(est: FeatureExtractor) -> None:
    """A fit interrupted after epoch 1 of 2 and resumed equals an uninterrupted fit."""
    from featurekit.registry import register_plugin, unregister_plugin

    modality = _modality(est)
    X, y = tiny_data(modality)
    uninterrupted = _fit(tiny(est, modality), X, y)
    if not uninterrupted.optimizers(uninterrupted.modules_):
        return  # nothing is trained, so there is nothing to resume
    reference = uninterrupted.transform(X)
    with tempfile.TemporaryDirectory() as tmp:
        register_plugin(_StopAfter(1), "featurekit-testing-stop")
        try:
            _fit(tiny(est, modality).set_params(checkpoint_dir=tmp), X, y)
            raise AssertionError("the interrupting hook did not stop the fit")
        except KeyboardInterrupt:
            pass
        finally:
            unregister_plugin("featurekit-testing-stop")
        resumed = _fit(tiny(est, modality).set_params(checkpoint_dir=tmp), X, y)
    assert resumed.n_epochs_ == 2, f"resumed fit has {resumed.n_epochs_} epochs of history; expected 2"
    assert np.array_equal(resumed.transform(X), reference), (
        "fit 1 epoch + resume 1 epoch differs from fitting 2 epochs; keep every piece of state in "
        "modules, buffers or extra_state() so checkpoints capture it")


def _like_input(out: Any, X: np.ndarray, shape: tuple[int, ...], verb: str) -> None:
    """``out`` is an ndarray of ``shape`` in ``X``'s conventions: integer pixels stay
    ``X``'s integer dtype, float input gives float output; every value finite."""
    assert isinstance(out, np.ndarray), f"{verb} returned {type(out).__name__}; return an ndarray"
    assert out.shape == shape, f"{verb} returned shape {out.shape}; expected {shape}"
    if np.issubdtype(X.dtype, np.integer):
        assert out.dtype == X.dtype, (
            f"{verb} returned {out.dtype} for {X.dtype} input; return the input's dtype "
            "(round and clip images back to its range)")
    else:
        assert np.issubdtype(out.dtype, np.floating), (
            f"{verb} returned {out.dtype} for float input; return floats")
    assert np.isfinite(out).all(), f"{verb} returned NaN or inf"


def check_verbs(est: FeatureExtractor) -> None:
    """Each declared verb works on the tiny data and returns what its contract says.

    - ``predict(X)``: one known label per row; ``predict_proba(X)``: rows summing to 1.
    - ``inverse_transform(features)``: inputs shaped and typed like ``X`` (as PCA's);
      features of the wrong width raise ``ValueError``.
    - ``reconstruct(X)``: ``X``'s shape and dtype.
    - ``sample(n_samples, random_state=...)``: ``n_samples`` inputs, the same twice
      for the same seed.
    - ``translate(X, to=domain)``: for each domain in ``domain_shapes_``, images of
      that domain's shape.
    - ``recombine(content_of=X1, style_of=X2)``: inputs shaped like ``X1``.
    """
    modality = _modality(est)
    X, y = tiny_data(modality)
    model = _fit(tiny(est, modality), X, y)
    for verb in est.verbs:
        fn = getattr(model, verb)
        if verb == "predict":
            pred = fn(X)
            assert pred.shape == (len(X),), f"predict returned shape {pred.shape}"
            assert set(np.unique(pred)) <= set(np.unique(y)), "predict returned unknown labels"
        elif verb == "predict_proba":
            proba = fn(X)
            assert proba.shape[0] == len(X), f"predict_proba returned shape {proba.shape}"
            np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-4,
                                       err_msg="predict_proba rows must sum to 1")
        elif verb == "inverse_transform":
            features = model.transform(X)
            _like_input(fn(features), X, X.shape, verb)
            try:
                fn(features[:, :-1])
            except ValueError:
                pass
            else:
                raise AssertionError("inverse_transform accepted features of the wrong width; "
                                     "raise ValueError naming the expected number")
        elif verb == "reconstruct":
            _like_input(fn(X), X, X.shape, verb)
        elif verb == "sample":
            first = fn(5, random_state=0)
            _like_input(first, X, (5, *X.shape[1:]), verb)
            assert np.array_equal(first, fn(5, random_state=0)), (
                "sample(n, random_state=0) differs between calls; draw from a generator "
                "seeded by random_state")
        elif verb == "translate":
            shapes = getattr(model, "domain_shapes_", None)
            assert isinstance(shapes, dict) and shapes, (
                "a method with translate must set domain_shapes_ = {domain: sample shape}")
            for domain, shape in shapes.items():
                _like_input(fn(X[:6], to=domain), X, (6, *shape), f"translate(to={domain!r})")
        elif verb == "recombine":
            _like_input(fn(content_of=X[:6], style_of=X[6:12]), X, X[:6].shape, verb)
        else:
            assert callable(fn), f"verb {verb!r} is not callable"


def check_bad_input(est: FeatureExtractor) -> None:
    """Empty input, one sample and NaN raise ValueErrors that name the problem."""
    modality = _modality(est)
    X, y = tiny_data(modality)
    cases = {"empty": (X[:0], y[:0], "0"), "one sample": (X[:1], y[:1], "1")}
    if modality == "tabular":
        Xn = X.copy()
        Xn[0, 0] = np.nan
        cases["NaN"] = (Xn, y, "nan")
    for case, (Xb, yb, word) in cases.items():
        try:
            _fit(tiny(est, modality), Xb, yb)
        except ValueError as exc:
            assert word in str(exc).lower(), f"{case}: error should say what is wrong; got {exc}"
        else:
            raise AssertionError(f"fit on {case} input did not raise ValueError")


def method_checks(est: FeatureExtractor) -> Iterator[Callable[[FeatureExtractor], None]]:
    """The checks that apply to ``est``, in order."""
    yield check_contract
    yield check_sklearn_conventions
    yield check_not_fitted
    if "image" in est.modalities:
        yield check_fit_transform_image
    if "tabular" in est.modalities:
        yield check_fit_transform_tabular
    yield from (check_determinism, check_y_usage, check_pickle_roundtrip, check_save_load,
                check_batch_invariance, check_optimizer_coverage, check_momentum_modules,
                check_resume, check_verbs, check_bad_input)


def check_method(est: FeatureExtractor, *, raise_on_failure: bool = True) -> list[CheckResult]:
    """Run every applicable check on ``est``.

    Parameters
    ----------
    est : FeatureExtractor
        An (unfitted) instance of the method's estimator class.
    raise_on_failure : bool, default=True
        Raise ``AssertionError`` at the first failing check; otherwise run them
        all and return the results (``featurekit plugins --check`` does this).
    """
    results = []
    for check in method_checks(est):
        try:
            check(est)
        except Exception as exc:
            if raise_on_failure:
                raise AssertionError(f"{type(est).__name__} failed {check.__name__}: {exc}") from exc
            results.append(CheckResult(check.__name__, False, f"{type(exc).__name__}: {exc}"))
        else:
            results.append(CheckResult(check.__name__, True))
    return results


def parametrize_method_checks(estimators: list[FeatureExtractor]):
    """A ``pytest.mark.parametrize`` over (estimator, check) pairs, one test per check."""
    import pytest

    pairs = [(est, check) for est in estimators for check in method_checks(est)]
    ids = [f"{type(est).__name__}-{check.__name__}" for est, check in pairs]
    return pytest.mark.parametrize("estimator, check", pairs, ids=ids)
