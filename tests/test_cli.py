"""The ``featurekit`` command line, through click's CliRunner, on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.datasets import load_digits

import featurekit
from featurekit.cli import get_cli, main
from featurekit.hookspecs import hookimpl
from featurekit.registry import PluginWarning, register_plugin, unregister_plugin
from featurekit.store import FeatureStore

TINY_MLP = ["--backbone", "mlp", "--param", "backbone_kwargs={'hidden': (16,)}",
            "--max-epochs", "1", "--batch-size", "16", "--random-state", "0", "-q"]


@pytest.fixture(scope="module")
def cli():
    return get_cli()


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def invoke(runner, cli, args):
    result = runner.invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=X[:40], y=y[:40])
    return path


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "unlabelled.npz"
    np.savez(path, x=load_digits().data[:40])
    return path


@pytest.fixture(scope="module")
def model(runner, cli, digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "simclr.pt"
    result = invoke(runner, cli, ["fit", "simclr", digits, "-o", path, *TINY_MLP])
    assert result.exit_code == 0, result.output
    return path, result.output


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / label / f"{i}.png")
    return root


def test_version(runner, cli):
    result = invoke(runner, cli, ["--version"])
    assert result.exit_code == 0 and featurekit.__version__ in result.output


def test_main_runs_the_group():
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0


@pytest.mark.parametrize("command", [[], ["plugins"], ["fit"], ["extract"], ["evaluate"],
                                     ["demo"]])
def test_help(runner, cli, command):
    result = invoke(runner, cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output and len(result.output.splitlines()) > 4


def test_plugins_lists_methods_and_backbones(runner, cli):
    result = invoke(runner, cli, ["plugins"])
    assert result.exit_code == 0, result.output
    for name in ("supervised", "pretrained", "simclr", "contrastive", "small_cnn", "mlp",
                 "resnet18", "IMAGENET1K_V1"):
        assert name in result.output
    assert "failed" not in result.output


def test_plugins_check_passes_for_pretrained(runner, cli):
    result = invoke(runner, cli, ["plugins", "--check", "pretrained"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    assert "check_save_load" in result.output and "0 failed" in result.output


def test_plugins_check_failure_exits_1(runner, cli, monkeypatch):
    from featurekit import testing

    results = [testing.CheckResult("check_contract", True),
               testing.CheckResult("check_resume", False, "AssertionError: no\ncheckpoint")]
    monkeypatch.setattr(testing, "check_method", lambda est, raise_on_failure: results)
    result = invoke(runner, cli, ["plugins", "--check", "simclr"])
    assert result.exit_code == 1
    assert "| check_resume   | FAIL   | AssertionError: no checkpoint |" in result.output
    assert "simclr: 1 passed, 1 failed" in result.output


class FailingMethodPlugin:
    @hookimpl
    def featurekit_register_methods(self, registry):
        raise RuntimeError("cannot import torch.flux")


def test_plugins_lists_failed_plugins(runner, plugins):
    plugins(FailingMethodPlugin(), "cli-failing")
    with pytest.warns(PluginWarning, match="cli-failing"):
        group = get_cli()
    result = invoke(runner, group, ["plugins"])
    assert result.exit_code == 0 and "simclr" in result.output
    assert "Plugins that failed to load" in result.output
    assert "cannot import torch.flux" in result.output and "cli-failing" in result.output


def test_fit_saves_a_model_that_loads(model):
    path, output = model
    assert path.is_file()
    assert "simclr: 40 samples, 1 epoch, final loss" in output and str(path) in output
    est = featurekit.load(path)
    assert est.name == "simclr" and est.backbone_kwargs == {"hidden": [16]}
    assert est.max_epochs == 1 and est.verbose == 0


def test_extract_writes_a_store(runner, cli, model, digits, tmp_path):
    out = tmp_path / "features.h5"
    result = invoke(runner, cli, ["extract", model[0], digits, "-o", out, "--batch-size", "7"])
    assert result.exit_code == 0, result.output
    assert "40 rows x 16 features" in result.output and str(out) in result.output
    with FeatureStore(out) as store:
        data, meta = store.read(), store.metadata
    assert data["features"].shape == (40, 16) and data["features"].dtype == np.float32
    assert data["ids"].tolist() == list(range(40))
    assert data["labels"].tolist() == load_digits().target[:40].tolist()
    assert "keys" not in data
    assert meta["method"] == "simclr" and meta["params"]["temperature"] == 0.5
    assert meta["featurekit_version"] == featurekit.__version__ and meta["torch_version"]
    assert meta["model"].endswith("simclr.pt") and "digits.npz" in meta["input_description"]
    assert meta["created"].endswith("+00:00")
    assert not list(tmp_path.glob("*.tmp"))


def test_evaluate_prints_a_table(runner, cli, model, digits):
    result = invoke(runner, cli, ["evaluate", model[0], digits, "--test-size", "0.5"])
    assert result.exit_code == 0, result.output
    assert "| raw inputs" in result.output and "| simclr" in result.output
    assert "%" in result.output and "20 train, 20 test" in result.output


def test_image_folder_fit_extract_evaluate(runner, cli, image_folder, tmp_path):
    model_path, out = tmp_path / "m.pt", tmp_path / "f.h5"
    fit = invoke(runner, cli, ["fit", "pretrained", image_folder, "-o", model_path, "--param",
                               "backbone_kwargs={'width': 4}", "--random-state", "0", "-q"])
    assert fit.exit_code == 0, fit.output
    assert "pretrained: 8 samples, 0 epochs" in fit.output
    result = invoke(runner, cli, ["extract", model_path, image_folder, "-o", out])
    assert result.exit_code == 0, result.output
    with FeatureStore(out) as store:
        data, meta = store.read(), store.metadata
    assert data["features"].shape == (8, 32)
    assert data["keys"][0].replace("\\", "/") == "a/0.png"
    assert data["labels"].tolist() == [0] * 4 + [1] * 4 and meta["label_names"] == ["a", "b"]
    result = invoke(runner, cli, ["evaluate", model_path, image_folder, "--test-size", "0.5"])
    assert result.exit_code == 0, result.output
    assert "no raw-pixel baseline" in result.output and "| pretrained" in result.output


@pytest.mark.parametrize("args, message", [
    (["fit", "simclrr", "{digits}", "-o", "{tmp}/m.pt"], "Did you mean 'simclr'"),
    (["fit", "simclr", "{digits}", "-o", "{tmp}/m.pt", "--param", "tempreature=0.2"],
     "simclr has no parameter 'tempreature'; its parameters are: backbone"),
    (["fit", "simclr", "{digits}", "-o", "{tmp}/m.pt", "--param", "temperature"],
     "expected NAME=VALUE"),
    (["fit", "simclr", "{digits}", "-o", "{tmp}/m.pt", "--max-epochs", "1", "--param",
      "max_epochs=2"], "max_epochs is given twice"),
    (["fit", "supervised", "{unlabelled}", "-o", "{tmp}/m.pt"], "DATA has none"),
    (["fit", "simclr", "{tmp}/missing.npz", "-o", "{tmp}/m.pt"], "does not exist"),
    (["fit", "simclr", "{digits}", "-o", "{tmp}/no/such/dir/m.pt"], "does not exist"),
    (["fit", "simclr", "{digits}", "-o", "{tmp}/m.pt", *TINY_MLP, "--param", "temperature=-1"],
     "The 'temperature' parameter of SimCLR must be"),
    (["fit", "simclr", "{digits}", "-o", "{tmp}/m.pt", "--max-epochs", "1", "-q"],
     "use backbone='mlp'"),
    (["fit", "simclr", "{audio}", "-o", "{tmp}/m.pt"], "audio, which simclr does not support"),
    (["fit", "simclr", "{tmp}", "-o", "{tmp}/m.pt"], "no image files"),
    (["evaluate", "{model}", "{unlabelled}"], "evaluate needs labels"),
    (["extract", "{digits}", "{digits}", "-o", "{tmp}/f.h5"], "cannot read"),
    (["plugins", "--check", "nope"], "no method named 'nope'"),
])
def test_usage_errors(runner, cli, tmp_path, digits, unlabelled, model, args, message):
    audio = tmp_path / "speech.npz"
    np.savez(audio, x=np.zeros((4, 100), np.int16), sample_rate=8000)
    names = {"digits": digits, "unlabelled": unlabelled, "tmp": tmp_path, "audio": audio,
             "model": model[0]}
    for name, value in names.items():
        args = [a.replace(f"{{{name}}}", str(value)) for a in args]
    result = invoke(runner, cli, args)
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and message in error[0], result.output


class CommandPlugin:
    @hookimpl
    def featurekit_register_commands(self, cli):
        import click

        @cli.command()
        def hello():
            """Say hello from a plugin."""
            click.echo("hello from a plugin")


class BrokenCommandPlugin:
    @hookimpl
    def featurekit_register_commands(self, cli):
        raise RuntimeError("boom")


class HijackingPlugin:
    @hookimpl
    def featurekit_register_commands(self, cli):
        import click

        cli.add_command(click.Command("fit", callback=lambda: None))


@pytest.fixture
def plugins():
    names = []

    def register(plugin, name):
        register_plugin(plugin, name)
        names.append(name)

    yield register
    for name in names:
        unregister_plugin(name)
    get_cli()


def test_plugin_command_appears_in_help(runner, plugins):
    plugins(CommandPlugin(), "cli-test-plugin")
    group = get_cli()
    help_text = invoke(runner, group, ["--help"]).output
    assert "hello" in help_text and "Say hello from a plugin." in help_text
    assert invoke(runner, group, ["hello"]).output == "hello from a plugin\n"
    unregister_plugin("cli-test-plugin")
    assert "hello" not in get_cli().commands


def test_broken_or_hijacking_command_plugins_are_contained(runner, plugins):
    plugins(BrokenCommandPlugin(), "cli-broken")
    plugins(HijackingPlugin(), "cli-hijack")
    plugins(CommandPlugin(), "cli-good")
    with pytest.warns(PluginWarning) as record:
        group = get_cli()
    messages = " ".join(str(w.message) for w in record)
    assert "'cli-broken' failed to add its commands" in messages and "boom" in messages
    assert "'cli-hijack' tried to replace the built-in command 'fit'" in messages
    assert "hello" in group.commands
    assert "Fit METHOD on DATA" in invoke(runner, group, ["fit", "--help"]).output


def test_demo_quick_fits_extracts_searches_and_reports(runner, cli, tmp_path):
    result = invoke(runner, cli, ["demo", "--quick", "-o", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    for row in ("raw pixels", "untrained small_cnn", "SimCLR small_cnn", "precision@10"):
        assert row in result.output
    assert {p.name for p in (tmp_path / "demo").iterdir()} == {
        "simclr.pt", "features.h5", "loss.png", "results.json"}
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert {r["features"] for r in results["table"]} == {
        "raw pixels", "untrained small_cnn", "SimCLR small_cnn"}
    assert all(0.1 < r["linear_probe"] <= 1 for r in results["table"])
