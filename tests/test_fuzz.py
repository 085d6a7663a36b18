"""Fuzzed input against the input adapters and the public estimators (toward #9).

Every property draws at most 50 examples, derandomized (the same ones on every
run), with sizes bounded so nothing can exhaust memory. The contract checked:
whatever a user passes, featurekit either works or raises an error of its own
or sklearn's (a ``ValueError``/``TypeError``) whose message says something,
never a bare torch ``RuntimeError``, a segfault or a hang.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import featurekit  # noqa: E402
from featurekit.exceptions import FeaturekitError, InputError  # noqa: E402

FUZZ = settings(max_examples=50, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: What a clear refusal may be: featurekit's errors, sklearn's (ValueError /
#: TypeError subclasses, InvalidParameterError), NotFittedError.
REFUSALS = (FeaturekitError, ValueError, TypeError)

DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64,
                          np.bool_, np.complex64])


def arrays(max_dims: int = 4, max_side: int = 9):
    """Arrays of any of DTYPES, 0 to ``max_dims`` dimensions, sides 0 to ``max_side``,
    with NaN and infinities among the floats."""
    return DTYPES.flatmap(lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
        elements=hnp.from_dtype(np.dtype(dtype), allow_nan=True, allow_infinity=True)
        if np.dtype(dtype).kind in "fc" else None))


def refused_clearly(call) -> np.ndarray | None:
    """Run ``call``; return its result, or None if it raised a clear refusal."""
    try:
        return call()
    except REFUSALS as exc:
        message = str(exc).strip()
        assert len(message) > 10, f"{type(exc).__name__} with no real message: {message!r}"
        return None


@pytest.fixture(scope="module")
def image_model():
    images = (np.random.default_rng(0).random((24, 8, 8)) * 255).astype(np.uint8)
    return featurekit.create("pretrained", backbone="small_cnn", backbone_kwargs={"width": 4},
                             device="cpu", random_state=0, verbose=0).fit(images)


@pytest.fixture(scope="module")
def table_model():
    rows = np.random.default_rng(0).normal(size=(24, 6))
    return featurekit.create("pretrained", backbone="mlp", backbone_kwargs={"hidden": (8,)},
                             device="cpu", random_state=0, verbose=0).fit(rows)


@FUZZ
@given(X=arrays())
def test_image_transform_works_or_refuses_clearly(image_model, X):
    out = refused_clearly(lambda: image_model.transform(X))
    if out is not None:
        assert out.dtype == np.float32 and out.shape == (len(X), image_model.feature_parts_[
            "features"].stop)
        assert np.isfinite(out).all()


@FUZZ
@given(X=arrays(max_dims=3))
def test_table_transform_works_or_refuses_clearly(table_model, X):
    out = refused_clearly(lambda: table_model.transform(X))
    if out is not None:
        assert out.shape[0] == len(X) and np.isfinite(out).all()


@FUZZ
@given(X=arrays(max_dims=4, max_side=6))
def test_fit_works_or_refuses_clearly(X):
    backbone = ("small_cnn", {"width": 2}) if np.ndim(X) >= 3 else ("mlp", {"hidden": (4,)})
    est = featurekit.create("pretrained", backbone=backbone[0], backbone_kwargs=backbone[1],
                            device="cpu", random_state=0, verbose=0)
    fitted = refused_clearly(lambda: est.fit(X))
    if fitted is not None:
        assert np.isfinite(fitted.transform(X)).all()


WRONG = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                  st.text(max_size=5), st.lists(st.integers(0, 3), max_size=3))


@FUZZ
@given(param=st.sampled_from(["batch_size", "max_epochs", "lr", "optimizer", "weight_decay",
                              "device", "precision", "scale", "channels", "image_size",
                              "verbose", "gradient_clip"]), value=WRONG)
def test_wrong_parameter_values_are_refused_by_name(param, value):
    images = (np.random.default_rng(1).random((16, 8, 8)) * 255).astype(np.uint8)
    est = featurekit.create("simclr", backbone_kwargs={"width": 2}, max_epochs=1, batch_size=8,
                            device="cpu", random_state=0, verbose=0).set_params(**{param: value})
    try:
        est.fit(images)
    except REFUSALS as exc:
        assert param in str(exc) or "image" in str(exc), f"{param}={value!r}: {exc}"


@FUZZ
@given(Q=arrays(max_dims=3, max_side=6), k=st.integers(-1, 12))
def test_index_search_works_or_refuses_clearly(Q, k):
    base = np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
    index = featurekit.FeatureIndex("flat").fit(base)
    found = refused_clearly(lambda: index.search(Q, k))
    if found is not None:
        scores, ids = found
        assert ids.shape == (len(Q), k) and ((ids >= 0) & (ids < 10)).all()


@pytest.mark.parametrize("X", [np.zeros((2, 0, 5), np.uint8), np.zeros((2, 4, 0, 3), np.uint8),
                               [np.zeros((3, 0)), np.zeros((4, 4))], np.array(7)],
                         ids=["0-high", "0-wide-rgb", "list", "0-d"])
def test_cases_the_fuzzer_found_are_refused_clearly(X):
    """Once a torch RuntimeError (a 0-pixel resize) and an IndexError (a 0-d array)."""
    est = featurekit.create("pretrained", backbone_kwargs={"width": 2}, image_size=4,
                            device="cpu", verbose=0)
    with pytest.raises(InputError, match="no pixels|images must be"):
        est.fit(X)
