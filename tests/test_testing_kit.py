"""The conformance kit as plugin authors meet it: the verb checks' messages, and the
pytest fixture that reports every failed check at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurekit.base import FeatureExtractor, store_params
from featurekit.pytest_plugin import format_failures
from featurekit.testing import CheckResult, check_verbs

pytest_plugins = ["pytester"]


class VerbMethod(FeatureExtractor):
    """A frozen backbone whose verbs are plain numpy, broken on request."""

    name = "verbmethod"
    family = "test"
    modalities = ("tabular",)
    verbs = ("inverse_transform", "reconstruct", "sample", "recombine")

    def __init__(self, backbone="mlp", *, broken=None, backbone_kwargs=None, weights=None,
                 part=None, max_epochs=10, batch_size=256, inference_batch_size=256,
                 optimizer="auto", lr="auto", weight_decay="auto", gradient_clip=None,
                 device="auto", precision="auto", num_workers=0, random_state=None, verbose=1,
                 checkpoint_dir=None, resume="auto", warm_start=False, eval_set=None,
                 n_iter_no_change=None, image_size=None, channels="auto", scale="auto",
                 image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        return torch.nn.ModuleDict({"backbone": spec.make_backbone().requires_grad_(False)})

    def optimizers(self, modules):
        return {}

    def training_step(self, modules, batch, ctx):
        """Never called: nothing to optimize."""

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}

    def inverse_transform(self, features):
        if self.broken == "inverse_width":
            return np.zeros((len(features), self.n_features_in_ + 1))
        if features.shape[1] != self.feature_parts_["features"].stop and self.broken != "lenient":
            raise ValueError("wrong number of features")
        return np.zeros((len(features), self.n_features_in_))

    def reconstruct(self, X):
        X = np.asarray(X)
        return X.astype(np.int64) if self.broken == "reconstruct_dtype" else X.astype(float)

    def sample(self, n_samples, random_state=None):
        seed = None if self.broken == "sample_seed" else random_state
        return np.random.default_rng(seed).normal(size=(n_samples, self.n_features_in_))

    def recombine(self, content_of, style_of):
        out = np.asarray(content_of, dtype=float)
        return np.full_like(out, np.nan) if self.broken == "recombine_nan" else out


def test_working_verbs_pass():
    check_verbs(VerbMethod())


@pytest.mark.parametrize("broken, message", [
    ("inverse_width", r"inverse_transform returned shape \(48, 65\); expected \(48, 64\)"),
    ("lenient", "inverse_transform accepted features of the wrong width; raise ValueError"),
    ("reconstruct_dtype", "reconstruct returned int64 for float input; return floats"),
    ("sample_seed", r"sample\(n, random_state=0\) differs between calls"),
    ("recombine_nan", "recombine returned NaN or inf"),
])
def test_broken_verbs_say_what_to_fix(broken, message):
    with pytest.raises(AssertionError, match=message):
        check_verbs(VerbMethod(broken=broken))


def test_failure_report_lists_every_failed_check():
    results = [CheckResult("check_contract", True),
               CheckResult("check_resume", False, "AssertionError: resumed fit\n differs"),
               CheckResult("check_verbs", False, "AssertionError: sample returned NaN")]
    report = format_failures(VerbMethod(), results)
    assert report.splitlines()[:3] == [
        "VerbMethod fails 2 of 3 featurekit conformance checks:",
        "  check_resume  AssertionError: resumed fit differs",
        "  check_verbs   AssertionError: sample returned NaN"]
    assert format_failures(VerbMethod(), results[:1]) == ""


PLUGIN_TEST = """
import numpy as np
import torch
from featurekit.base import FeatureExtractor


class Frozen(FeatureExtractor):
    name = "frozen"
    family = "test"

    def __init__(self, backbone="small_cnn", *, device="cpu", verbose=0):
        self.backbone, self.device, self.verbose = backbone, device, verbose

    def build(self, spec):
        return torch.nn.ModuleDict({"backbone": spec.make_backbone().requires_grad_(False)})

    def optimizers(self, modules):
        return {}

    def training_step(self, modules, batch, ctx):
        pass

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}


def test_frozen(featurekit_check):
    featurekit_check(Frozen())


def test_tiny_data(featurekit_tiny_data):
    X, y = featurekit_tiny_data("image")
    assert X.shape == (48, 8, 8) and X.dtype == np.uint8 and len(y) == 48
"""


def test_pytest_fixture_reports_all_failures_in_one_table(pytester):
    """Loaded through the pytest11 entry point: the test file needs no conftest."""
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    # Frozen's __init__ lacks the common parameters, and so cannot be tiny()-configured.
    result.stdout.fnmatch_lines(["*Frozen fails * of * featurekit conformance checks:",
                                 "  check_contract *__init__ lacks the common parameters*"])
    assert "Traceback" not in result.stdout.str()  # pytrace=False: the table is the report
