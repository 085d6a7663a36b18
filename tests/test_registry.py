"""Plugin discovery, fault isolation and the public registry API.

Fault tests add fake entry points to the real ones (modules written under
``tmp_path``), rediscover with ``reload_plugins()`` and rediscover again at
teardown, so no other test sees them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

import featurekit
import featurekit.registry
from featurekit import hookspecs
from featurekit.base import FeatureExtractor
from featurekit.exceptions import DuplicateNameError, UnknownNameError
from featurekit.registry import PluginWarning, get_registry, reload_plugins

BUILTIN = {"supervised": "supervised", "pretrained": "supervised", "simclr": "contrastive"}
TINY = {"backbone": "mlp", "backbone_kwargs": {"hidden": (16,)}, "max_epochs": 1,
        "batch_size": 16, "verbose": 0, "device": "cpu", "random_state": 0}


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data[:32]


# -- the public API --------------------------------------------------------------------

def test_list_methods_has_the_builtins_with_their_package():
    rows = {row["name"]: row for row in featurekit.list_methods()}
    for name, family in BUILTIN.items():
        assert rows[name]["family"] == family
        assert rows[name]["distribution"] == "featurekit"
        assert rows[name]["version"] == importlib.metadata.version("featurekit")
    assert [r["name"] for r in featurekit.list_methods("sim*")] == ["simclr", "simsiam"]


def test_list_backbones_wildcard_and_pretrained_filter():
    assert [r["name"] for r in featurekit.list_backbones("resnet*")] == [
        "resnet18", "resnet34", "resnet50"]
    with_weights = featurekit.list_backbones(pretrained=True)
    names = {r["name"] for r in with_weights}
    assert {"resnet18", "resnet50", "vgg16_bn", "alexnet"} <= names
    assert not names & {"small_cnn", "mlp", "vit_tiny"}
    assert all("IMAGENET1K_V1" in r["pretrained"] for r in with_weights)
    without = {r["name"] for r in featurekit.list_backbones(pretrained=False)}
    assert "small_cnn" in without and not without & names


def test_create_passes_params():
    est = featurekit.create("simclr", temperature=0.2)
    assert type(est).__name__ == "SimCLR" and est.temperature == 0.2
    assert est.get_params()["temperature"] == 0.2


def test_unknown_method_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'simclr'") as info:
        featurekit.create("simclrr")
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("backbone, close", [("resnet19", "resnet18"), ("mpl", "mlp")])
def test_unknown_backbone_at_fit_suggests_close_names(digits, backbone, close):
    X = digits.reshape(-1, 8, 8) / 16 if close.startswith("resnet") else digits
    est = featurekit.create("pretrained", **{**TINY, "backbone": backbone})
    with pytest.raises(UnknownNameError, match=f"Did you mean '{close}'"):
        est.fit(X)


def test_method_classes_resolve_lazily_by_name():
    assert featurekit.SimCLR is get_registry().method("simclr").cls
    assert featurekit.Supervised is get_registry().method("supervised").cls
    with pytest.raises(AttributeError, match="Nope"):
        featurekit.Nope  # noqa: B018


def test_importing_featurekit_imports_no_plugin():
    code = ("import featurekit, sys; print('featurekit_contrastive' in sys.modules, "
            "'featurekit_supervised' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]


def test_every_hookspec_is_prefixed_and_documented():
    specs = {name: fn for name, fn in vars(hookspecs).items()
             if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")}
    assert {"featurekit_register_methods", "featurekit_register_backbones",
            "featurekit_register_commands", "featurekit_on_epoch_end"} <= set(specs)
    for name, fn in specs.items():
        assert name.startswith("featurekit_"), name
        assert inspect.getdoc(fn), f"hook {name} has no docstring"


# -- fault isolation ------------------------------------------------------------------------

class FakePlugins:
    """Adds entry points of a fake distribution, each backed by a module under tmp_path."""

    def __init__(self, tmp_path, monkeypatch: pytest.MonkeyPatch):
        self.tmp_path, self.extra, self.modules = tmp_path, [], []
        real = importlib.metadata.entry_points

        def entry_points(**kwargs):
            found = real(**kwargs)
            if kwargs.get("group") != hookspecs.ENTRY_POINT_GROUP:
                return found
            return importlib.metadata.EntryPoints([*found, *self.extra])

        monkeypatch.setattr(featurekit.registry.importlib.metadata, "entry_points", entry_points)
        monkeypatch.syspath_prepend(str(tmp_path))

    def add(self, name: str, source: str, distribution: str = "fake-featurekit-plugin"):
        module = f"fk_test_plugin_{name}"
        (self.tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        self.modules.append(module)
        ep = importlib.metadata.EntryPoint(name, module, hookspecs.ENTRY_POINT_GROUP)
        # EntryPoint._for is how importlib.metadata itself binds the distribution.
        dist = types.SimpleNamespace(name=distribution, version="9.9.9")
        self.extra.append(ep._for(dist))

    def remove_all(self) -> None:
        self.extra.clear()
        for module in self.modules:
            sys.modules.pop(module, None)


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    plugins = FakePlugins(tmp_path, monkeypatch)
    yield plugins
    plugins.remove_all()
    reload_plugins()


def failures_of(plugin: str) -> list:
    return [f for f in get_registry().failures if f.plugin == plugin]


def assert_builtins_work():
    for name in BUILTIN:
        assert type(featurekit.create(name)).__name__ == get_registry().methods[name].cls.__name__


def test_plugin_failing_to_import_is_reported_and_skipped(fake_plugins):
    fake_plugins.add("broken", "raise ImportError('needs the package somelib')",
                     distribution="fk-broken")
    with pytest.warns(PluginWarning, match=r"'broken' from package 'fk-broken'.*somelib"):
        reload_plugins()
    [failure] = failures_of("broken")
    assert failure.distribution == "fk-broken"
    assert "ImportError" in failure.error and "somelib" in failure.error
    assert_builtins_work()


def test_register_hook_raising_is_reported_and_skipped(fake_plugins):
    fake_plugins.add("raiser", """
        from featurekit.hookspecs import hookimpl

        @hookimpl
        def featurekit_register_methods(registry):
            raise RuntimeError("registration exploded")
    """, distribution="fk-raiser")
    with pytest.warns(PluginWarning, match="fk-raiser.*registration exploded"):
        reload_plugins()
    [failure] = failures_of("raiser")
    assert "featurekit_register_methods" in failure.error
    assert_builtins_work()


DUPLICATE_SIMCLR = """
    from featurekit.hookspecs import hookimpl
    from featurekit_contrastive import SimCLR

    class OtherSimCLR(SimCLR):
        pass  # inherits name = "simclr"

    @hookimpl
    def featurekit_register_methods(registry):
        registry.add_method(OtherSimCLR)
"""

DUPLICATE_SMALL_CNN = """
    from torch import nn
    from featurekit.hookspecs import hookimpl

    @hookimpl
    def featurekit_register_backbones(registry):
        registry.add_backbone("small_cnn", lambda **kwargs: nn.Identity())
"""


def test_duplicate_method_name_is_an_error_naming_both_packages(fake_plugins):
    fake_plugins.add("dup", DUPLICATE_SIMCLR, distribution="fk-dup")
    with pytest.warns(PluginWarning, match="DuplicateNameError"):
        reload_plugins()
    [failure] = [f for f in get_registry().failures if "DuplicateNameError" in f.error]
    assert "'simclr'" in failure.error
    assert "featurekit 0.1.0" in failure.error and "fk-dup 9.9.9" in failure.error
    # Intended: an ambiguous name is an error naming both sources, never a silent pick
    # of whichever plugin happened to load first. Other names keep working.
    with pytest.raises(DuplicateNameError, match="'simclr'") as info:
        featurekit.create("simclr")
    assert "featurekit 0.1.0" in str(info.value) and "fk-dup 9.9.9" in str(info.value)
    assert type(featurekit.create("supervised")).__name__ == "Supervised"


def test_the_plugin_registering_a_taken_name_second_is_the_one_reported(fake_plugins):
    fake_plugins.add("dupbackbone", DUPLICATE_SMALL_CNN, distribution="fk-dupbackbone")
    with pytest.warns(PluginWarning, match="DuplicateNameError"):
        reload_plugins()
    [failure] = [f for f in get_registry().failures if "DuplicateNameError" in f.error]
    assert (failure.plugin, failure.distribution) == ("dupbackbone", "fk-dupbackbone")
    assert "pip uninstall featurekit)" not in failure.error
    # The built-in backbones registered after small_cnn are still there.
    assert "mlp" in get_registry().backbones


def test_duplicate_backbone_name_is_an_error_too(fake_plugins):
    fake_plugins.add("dupbackbone", DUPLICATE_SMALL_CNN, distribution="fk-dupbackbone")
    with pytest.warns(PluginWarning, match="DuplicateNameError"):
        reload_plugins()
    assert "backbone:small_cnn" in get_registry().conflicts
    with pytest.raises(DuplicateNameError, match="fk-dupbackbone"):
        get_registry().backbone("small_cnn")


@pytest.mark.parametrize("body, message", [
    ("class NotAMethod:\n    name = 'notamethod'\n    family = 'toy'",
     "is not a featurekit.FeatureExtractor subclass; derive"),
    ("from featurekit.base import FeatureExtractor\n"
     "class NoEmbed(FeatureExtractor):\n"
     "    name = 'noembed'\n    family = 'toy'\n"
     "    def build(self, spec): ...\n"
     "    def optimizers(self, modules): ...\n"
     "    def training_step(self, modules, batch, ctx): ...",
     "does not implement `embed`, which every method must provide"),
], ids=["not-a-feature-extractor", "no-embed"])
def test_invalid_method_class_says_what_to_implement(fake_plugins, body, message):
    cls = body.split("class ")[1].split("(")[0].split(":")[0]
    fake_plugins.add("invalid", f"""
from featurekit.hookspecs import hookimpl
{body}

@hookimpl
def featurekit_register_methods(registry):
    registry.add_method({cls})
""", distribution="fk-invalid")
    with pytest.warns(PluginWarning, match="fk-invalid"):
        reload_plugins()
    [failure] = failures_of("invalid")
    assert message in failure.error and cls in failure.error
    assert_builtins_work()


# -- API versions and augmentations ----------------------------------------------------------

def test_builtin_plugins_declare_the_current_api():
    sources = [m.source for m in get_registry().methods.values()]
    sources += [b.source for b in get_registry().backbones.values()]
    sources += [a.source for a in get_registry().augmentations.values()]
    assert {s.api for s in sources} == {featurekit.API_VERSION}
    assert get_registry().notices == []


@pytest.mark.parametrize("declared, message", [
    ("FEATUREKIT_API_VERSION = 99", "is written for featurekit plugin API 99, but featurekit "
                                    "0.1.0 provides API 1.*upgrade featurekit"),
    ("FEATUREKIT_API_VERSION = 0", "declares FEATUREKIT_API_VERSION = 0, which must be a "
                                   "positive int"),
    ("FEATUREKIT_API_VERSION = '1'", "declares FEATUREKIT_API_VERSION = '1', which must"),
], ids=["newer", "zero", "string"])
def test_api_version_mismatch_warns_and_the_plugin_still_loads(fake_plugins, declared, message):
    fake_plugins.add("future", f"""
        from featurekit.hookspecs import hookimpl
        from featurekit_contrastive import SimCLR

        {declared}

        class FutureMethod(SimCLR):
            name = "futuremethod"

        @hookimpl
        def featurekit_register_methods(registry):
            registry.add_method(FutureMethod)
    """, distribution="fk-future")
    with pytest.warns(PluginWarning, match=f"'future' from package 'fk-future' {message}"):
        reload_plugins()
    [notice] = get_registry().notices
    assert notice.distribution == "fk-future" and get_registry().failures == []
    assert type(featurekit.create("futuremethod")).__name__ == "FutureMethod"
    assert_builtins_work()


def test_older_api_names_the_plugin_upgrade(fake_plugins, monkeypatch):
    fake_plugins.add("old", "FEATUREKIT_API_VERSION = 2", distribution="fk-old")
    with monkeypatch.context() as patch, pytest.warns(PluginWarning) as record:
        patch.setattr(featurekit, "API_VERSION", 3)
        reload_plugins()
    [message] = [str(w.message) for w in record if "fk-old" in str(w.message)]
    assert "API 2, but featurekit 0.1.0 provides API 3" in message
    assert "upgrade fk-old, or install a featurekit that provides API 2" in message


AUGMENTATION_PLUGIN = """
    import torch
    from featurekit.hookspecs import hookimpl

    FEATUREKIT_API_VERSION = 1

    class Invert:
        def __call__(self, x, generator):
            return 1 - x

    @hookimpl
    def featurekit_register_augmentations(registry):
        registry.add_augmentation("invert", Invert, description="1 - x")
        registry.add_augmentation("random_solarize", Invert)  # taken by featurekit
"""


def test_plugin_augmentations_register_and_build_by_name(fake_plugins):
    fake_plugins.add("augs", AUGMENTATION_PLUGIN, distribution="fk-augs")
    with pytest.warns(PluginWarning, match="augmentation name 'random_solarize'.*fk-augs"):
        reload_plugins()
    [row] = featurekit.list_augmentations("inv*")
    assert row == {"name": "invert", "modality": "image", "distribution": "fk-augs",
                   "description": "1 - x"}
    op = featurekit.create_augmentation("invert")
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(op(x, torch.Generator()), 1 - x)
    with pytest.raises(DuplicateNameError, match="random_solarize.*fk-augs"):
        featurekit.create_augmentation("random_solarize")
    with pytest.raises(UnknownNameError, match="Did you mean 'invert'"):
        featurekit.create_augmentation("inverts")
    flip = featurekit.create_augmentation("random_horizontal_flip", p=1.0)
    assert torch.equal(flip(x, torch.Generator()), x.flip(-1))


def test_augmentation_with_unknown_modality_is_reported(fake_plugins):
    fake_plugins.add("badaug", """
        from featurekit.hookspecs import hookimpl

        @hookimpl
        def featurekit_register_augmentations(registry):
            registry.add_augmentation("wobble", lambda: None, modality="video")
    """, distribution="fk-badaug")
    with pytest.warns(PluginWarning, match="fk-badaug.*modality must be 'image'"):
        reload_plugins()
    assert "wobble" not in get_registry().augmentations
    assert_builtins_work()


# -- runtime plugins and the epoch hook ----------------------------------------------------------

class ToyMethod(FeatureExtractor):
    """The smallest valid method: a frozen backbone, registered at run time."""

    name = "toy"
    family = "test"

    def __init__(self, backbone="small_cnn", *, device="cpu", verbose=0):
        self.backbone, self.device, self.verbose = backbone, device, verbose

    def build(self, spec):
        return torch.nn.ModuleDict({"backbone": spec.make_backbone()})

    def optimizers(self, modules):
        return {}

    def training_step(self, modules, batch, ctx):
        """Never called: nothing to optimize."""

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}


class ToyPlugin:
    @featurekit.hookimpl
    def featurekit_register_methods(self, registry):
        registry.add_method(ToyMethod)


@pytest.fixture
def runtime_plugins():
    names = []

    def register(plugin, name):
        featurekit.registry.register_plugin(plugin, name)
        names.append(name)

    yield register
    for name in names:
        featurekit.registry.unregister_plugin(name)
    reload_plugins()


def test_register_plugin_round_trip(runtime_plugins):
    with pytest.raises(UnknownNameError):
        featurekit.create("toy")
    runtime_plugins(ToyPlugin(), "toy-plugin")
    assert isinstance(featurekit.create("toy"), ToyMethod)
    [row] = featurekit.list_methods("toy")
    assert row["family"] == "test" and row["distribution"] == "<runtime>"
    featurekit.registry.unregister_plugin("toy-plugin")
    with pytest.raises(UnknownNameError, match="toy"):
        featurekit.create("toy")
    assert_builtins_work()


class EpochRecorder:
    def __init__(self):
        self.calls = []

    @featurekit.hookimpl
    def featurekit_on_epoch_end(self, estimator, epoch, history):
        self.calls.append((epoch, sorted(history), len(history["epoch_time"])))


class EpochRaiser:
    @featurekit.hookimpl
    def featurekit_on_epoch_end(self, estimator, epoch, history):
        raise ValueError("observer is broken")


def test_on_epoch_end_sees_every_epoch(runtime_plugins, digits):
    recorder = EpochRecorder()
    runtime_plugins(recorder, "recorder")
    est = featurekit.create("simclr", **{**TINY, "max_epochs": 2}).fit(digits)
    keys = sorted(est.history_)
    assert "epoch_time" in keys and "lr" in keys
    assert recorder.calls == [(1, keys, 1), (2, keys, 2)]


def test_on_epoch_end_raising_warns_and_fit_completes(runtime_plugins, digits):
    runtime_plugins(EpochRaiser(), "raiser")
    recorder = EpochRecorder()
    runtime_plugins(recorder, "recorder")
    with pytest.warns(UserWarning, match="'raiser' raised ValueError: observer is broken"):
        est = featurekit.create("simclr", **{**TINY, "max_epochs": 2}).fit(digits)
    assert est.n_epochs_ == 2 and [c[0] for c in recorder.calls] == [1, 2]
    assert est.transform(digits).shape == (32, 16)
