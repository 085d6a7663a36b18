"""The ``featurekit`` command line, through click's CliRunner, on tiny data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.datasets import load_digits

import featurekit
from featurekit.cli import get_cli, main
from featurekit.hookspecs import hookimpl
from featurekit.index import FeatureIndex
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
    # An exception click did not turn into a message and an exit status escaped.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
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
                                     ["index"], ["search"], ["cluster"], ["demo"]])
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


class FuturePlugin:
    FEATUREKIT_API_VERSION = 7

    @hookimpl
    def featurekit_register_augmentations(self, registry):
        registry.add_augmentation("shuffle_rows", lambda: None, modality="tabular",
                                  description="a test augmentation")


def test_plugins_lists_augmentations_api_versions_and_warnings(runner, plugins):
    plugins(FuturePlugin(), "cli-future")
    with pytest.warns(PluginWarning, match="cli-future.*plugin API 7"):
        group = get_cli()
    result = invoke(runner, group, ["plugins"])
    assert result.exit_code == 0, result.output
    assert f"plugin API {featurekit.API_VERSION})" in result.output
    methods, backbones, augmentations, notices = tables(result.output)
    assert {row["api"] for row in methods} == {str(featurekit.API_VERSION)}
    assert {"augmentation": "shuffle_rows", "modality": "tabular", "package": "<runtime>",
            "description": "a test augmentation"} in augmentations
    assert "random_resized_crop" in {row["augmentation"] for row in augmentations}
    assert "Plugins loaded with a warning" in result.output
    assert notices[0]["plugin"] == "cli-future" and "upgrade featurekit" in notices[0]["problem"]


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
        "simclr.pt", "features.h5", "features.index", "loss.png", "neighbours.png",
        "results.json"}
    assert_png(tmp_path / "demo" / "neighbours.png")
    assert f"neighbour grid: {tmp_path / 'demo' / 'neighbours.png'}" in result.output
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert 0 < results["search"]["precision_at_k"] <= 1
    # The saved index answers `featurekit search`, its store found through its metadata.
    some_id = FeatureIndex.load(results["index"]).ids_[0]
    found = invoke(runner, cli, ["search", results["index"], some_id, "-k", "3"])
    assert found.exit_code == 0, found.output
    assert tables(found.output)[0][0]["id"] == str(some_id)
    assert {r["features"] for r in results["table"]} == {
        "raw pixels", "untrained small_cnn", "SimCLR small_cnn"}
    assert all(0.1 < r["linear_probe"] <= 1 for r in results["table"])


# -- index, search, cluster ----------------------------------------------------------------

def tables(output):
    """The markdown tables in ``output``, each a list of {column: cell} rows."""
    found, lines = [], []
    for line in [*output.splitlines(), ""]:
        if line.startswith("|"):
            lines.append([cell.strip() for cell in line.strip("|").split("|")])
        elif lines:
            found.append([dict(zip(lines[0], row)) for row in lines[2:]])
            lines = []
    return found


def assert_png(path):
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 50 and img.height > 50
        img.verify()


def one_error(result, exit_code, message):
    assert result.exit_code == exit_code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], result.output


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """24 MNIST digits as PNG files, in class folders 0, 1 and 7."""
    from featurekit.datasets import load_mnist

    X, y = load_mnist()
    root = tmp_path_factory.mktemp("digits")
    for digit in (0, 1, 7):
        (root / str(digit)).mkdir()
        for i in np.flatnonzero(y == digit)[:8]:
            Image.fromarray(X[i]).save(root / str(digit) / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_store(runner, cli, digit_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("image-store")
    model_path, store = folder / "model.pt", folder / "features.h5"
    fit = invoke(runner, cli, ["fit", "pretrained", digit_folder, "-o", model_path, "--param",
                               "backbone_kwargs={'width': 4}", "--random-state", "0", "-q"])
    assert fit.exit_code == 0, fit.output
    result = invoke(runner, cli, ["extract", model_path, digit_folder, "-o", store, "-q"])
    assert result.exit_code == 0, result.output
    return store


@pytest.fixture(scope="module")
def image_index(runner, cli, image_store):
    path = image_store.with_suffix(".index")
    result = invoke(runner, cli, ["index", image_store, "-o", path])
    assert result.exit_code == 0, result.output
    return path, result.output


@pytest.fixture(scope="module")
def store_keys(image_store):
    with FeatureStore(image_store) as store:
        return store.keys.asstr()[:].tolist()


def test_index_writes_an_index_that_records_its_store(image_index, image_store, store_keys):
    path, output = image_index
    assert "24 vectors of 32 features, flat index (cosine), built in" in output
    assert output.rstrip().endswith(f"-> {path}") and len(output.splitlines()) == 1
    index = FeatureIndex.load(path)
    assert index.ntotal == 24 and index.keys_.tolist() == store_keys
    assert index.metadata_["store"] == str(image_store.resolve())
    assert index.metadata_["model"].endswith("model.pt") and index.metadata_["model_sha256"]


def test_search_by_id_finds_the_row_itself_first(runner, cli, image_index, store_keys):
    result = invoke(runner, cli, ["search", image_index[0], 5, 20, "-k", 4])
    assert result.exit_code == 0, result.output
    assert "4 nearest of 24 indexed vectors (flat index; score: cosine similarity" in result.output
    assert f"query 1: id 5 ({store_keys[5]})" in result.output
    first, second = tables(result.output)
    assert [len(first), len(second)] == [4, 4]
    assert list(first[0]) == ["rank", "id", "key", "label", "score"]
    assert first[0]["id"] == "5" and abs(float(first[0]["score"]) - 1) < 1e-4
    assert first[0]["key"] == store_keys[5] and first[0]["label"] == store_keys[5][0]
    assert second[0]["id"] == "20" and second[0]["label"] == "7"
    scores = [float(row["score"]) for row in first]
    assert scores == sorted(scores, reverse=True)


def test_search_by_image_file_embeds_it_with_the_recorded_model(runner, cli, image_index,
                                                                digit_folder, store_keys):
    query = digit_folder / store_keys[12]
    result = invoke(runner, cli, ["search", image_index[0], query, "-k", 3])
    assert result.exit_code == 0, result.output
    assert f"query 1: {query}" in result.output
    (rows,) = tables(result.output)
    assert rows[0]["id"] == "12" and abs(float(rows[0]["score"]) - 1) < 1e-4


def test_search_grid_is_a_png(runner, cli, image_index, digit_folder, store_keys, tmp_path):
    grid = tmp_path / "neighbours.png"
    result = invoke(runner, cli, ["search", image_index[0], 0, digit_folder / store_keys[9],
                                  "-k", 3, "--grid", grid])
    assert result.exit_code == 0, result.output
    assert f"grid -> {grid}" in result.output and "unreadable" not in result.output
    assert_png(grid)
    assert [p.name for p in tmp_path.iterdir()] == ["neighbours.png"]  # no temporary file


@pytest.mark.filterwarnings("ignore:nlist=2 leaves fewer than 39 training vectors")
@pytest.mark.parametrize("options, effort", [
    (["--kind", "ivf", "--nlist", 2, "--nprobe", 2], "built in"),
    (["--kind", "ivf", "--nlist", 2, "--target-recall", 0.5], "nprobe 1 (calibrated)"),
    (["--kind", "hnsw", "--metric", "l2"], "efSearch 10 (calibrated)")])
def test_other_index_kinds(runner, cli, image_store, tmp_path, options, effort):
    path = tmp_path / "f.index"
    result = invoke(runner, cli, ["index", image_store, "-o", path, *options])
    assert result.exit_code == 0, result.output
    assert f"{options[1]} index" in result.output and effort in result.output
    assert ("calibrated" in result.output) == ("--nprobe" not in options)
    result = invoke(runner, cli, ["search", path, 7, "-k", 2])
    assert result.exit_code == 0, result.output
    assert tables(result.output)[0][0]["id"] == "7"


def test_cluster_prints_sizes_scores_and_writes_labels_and_grid(runner, cli, image_store,
                                                                tmp_path):
    labels, grid = tmp_path / "clusters.npy", tmp_path / "clusters.png"
    result = invoke(runner, cli, ["cluster", image_store, "--seed", 1, "-o", labels,
                                  "--grid", grid, "--per-cluster", 4])
    assert result.exit_code == 0, result.output
    assert "k-means (spherical) of 24 rows x 32 features into 3 clusters" in result.output
    (rows,) = tables(result.output)
    sizes = [int(row["size"]) for row in rows]
    assert len(sizes) == 3 and sum(sizes) == 24
    assert {row["top label"] for row in rows} <= {"0", "1", "7"}
    assert "against the store's labels: NMI " in result.output and ", ARI " in result.output
    saved = np.load(labels)
    assert saved.dtype == np.int64 and np.bincount(saved, minlength=3).tolist() == sizes
    assert_png(grid)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.npy", "clusters.png"]


def test_cluster_euclidean_with_k(runner, cli, image_store):
    result = invoke(runner, cli, ["cluster", image_store, "-k", 5, "--euclidean", "--n-init", 2])
    assert result.exit_code == 0, result.output
    assert "(Euclidean)" in result.output and "into 5 clusters" in result.output
    assert sum(int(row["size"]) for row in tables(result.output)[0]) == 24


@pytest.fixture(scope="module")
def plain_index(runner, cli, tmp_path_factory):
    """An index of a store written by the Python API: keys that are no files, no model."""
    from featurekit.store import write_store

    folder = tmp_path_factory.mktemp("plain")
    features = np.random.default_rng(0).normal(size=(6, 4))
    store = write_store(folder / "plain.h5", features, keys=[f"row{i}" for i in range(6)])
    result = invoke(runner, cli, ["index", store, "-o", folder / "plain.index"])
    assert result.exit_code == 0, result.output
    return folder / "plain.index"


@pytest.fixture(scope="module")
def digits_index(runner, cli, model, digits, tmp_path_factory):
    """An index of a store without keys (extracted from an .npz), its model recorded."""
    folder = tmp_path_factory.mktemp("digits-index")
    result = invoke(runner, cli, ["extract", model[0], digits, "-o", folder / "f.h5", "-q"])
    assert result.exit_code == 0, result.output
    result = invoke(runner, cli, ["index", folder / "f.h5", "-o", folder / "f.index"])
    assert result.exit_code == 0, result.output
    return folder / "f.index"


def test_search_grid_of_keys_that_are_not_images_fails_clearly(runner, cli, plain_index,
                                                               tmp_path):
    grid = tmp_path / "g.png"
    result = invoke(runner, cli, ["search", plain_index, 0, "-k", 2, "--grid", grid])
    one_error(result, 1, "none of the images could be read")
    assert "| row0 " in result.output  # the table came first
    assert not grid.exists()


@pytest.mark.parametrize("args, message", [
    (["search", "{tmp}/missing.index", "0"], "'{tmp}/missing.index' does not exist"),
    (["search", "{store}", "0"], "is not a featurekit index"),
    (["index", "{tmp}/plain.h5", "-o", "{tmp}/f.index"], "not a featurekit feature store"),
    (["index", "{digits}", "-o", "{tmp}/f.index"], "is not a feature store: it is not HDF5"),
    (["index", "{store}", "-o", "{tmp}/no/such/dir/f.index"], "does not exist"),
    (["index", "{store}", "-o", "{tmp}/f.index", "--nlist", "4"],
     "--nlist applies to --kind ivf or ivfpq, not flat"),
    (["search", "{index}", "0", "-k", "25"], "-k 25 is larger than the index, which holds 24"),
    (["search", "{index}", "0", "-k", "0"], "0 is not in the range x>=1"),
    (["search", "{index}", "{tmp}/nope.png"],
     "QUERY '{tmp}/nope.png' is neither an integer id nor an existing image file"),
    (["search", "{index}", "99"], "id 99 is not in the indexed store"),
    (["search", "{index}", "{digits}"], "cannot read image file"),
    (["search", "{plain}", "{query}", "-k", "2"], "INDEX records none: give it with --model"),
    (["search", "{index}", "{query}", "--model", "{model}"],
     "did not make the indexed features"),
    (["search", "{digits_index}", "0", "--grid", "{tmp}/g.png"],
     "this index has no file names (keys)"),
    (["search", "{index}", "0", "--grid", "{tmp}/no/such/dir/g.png"], "does not exist"),
    (["cluster", "{store}", "-k", "25"], "-k 25 is more clusters than STORE has rows (24)"),
    (["cluster", "{plain_store}"], "give the number of clusters with -k"),
    (["cluster", "{digits_store}", "-k", "2", "--grid", "{tmp}/g.png"],
     "STORE has no file names (keys)"),
])
def test_search_usage_errors(runner, cli, tmp_path, image_store, image_index, plain_index,
                             digits_index, digits, digit_folder, store_keys, model, args,
                             message):
    import h5py

    with h5py.File(tmp_path / "plain.h5", "w") as f:  # HDF5, but not a featurekit store
        f["x"] = np.zeros(3)
    names = {"tmp": tmp_path, "store": image_store, "index": image_index[0],
             "plain": plain_index, "plain_store": plain_index.with_suffix(".h5"),
             "digits_index": digits_index, "digits_store": digits_index.with_suffix(".h5"),
             "digits": digits, "model": model[0],
             "query": digit_folder / store_keys[0]}
    for name, value in names.items():
        args = [a.replace(f"{{{name}}}", str(value)) for a in args]
        message = message.replace(f"{{{name}}}", str(value))
    one_error(invoke(runner, cli, args), 2, message)


def test_recorded_model_that_is_gone(runner, cli, image_index, digit_folder, store_keys,
                                     tmp_path):
    index = FeatureIndex.load(image_index[0])
    moved = tmp_path / "moved.index"
    index.save(moved, metadata={**index.metadata_, "model": str(tmp_path / "gone.pt")})
    result = invoke(runner, cli, ["search", moved, digit_folder / store_keys[0]])
    one_error(result, 2, f"the one INDEX records ({tmp_path / 'gone.pt'}) is not there")


def test_id_queries_need_the_recorded_store(runner, cli, image_index, tmp_path):
    index = FeatureIndex.load(image_index[0])
    moved = tmp_path / "moved.index"
    index.save(moved, metadata={**index.metadata_, "store": str(tmp_path / "gone.h5")})
    one_error(invoke(runner, cli, ["search", moved, "3"]), 2,
              f"the store INDEX records ({tmp_path / 'gone.h5'}) is not there")


def test_grid_without_matplotlib_names_the_extra(runner, cli, image_index, monkeypatch,
                                                 tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    result = invoke(runner, cli, ["search", image_index[0], "0", "--grid", tmp_path / "g.png"])
    one_error(result, 2, 'needs matplotlib: pip install "featurekit[plots]"')


def test_a_refused_write_is_one_line_exit_1(runner, cli, image_store, monkeypatch, tmp_path):
    from featurekit.exceptions import StoreError

    def refuse(self, path, **kwargs):
        raise StoreError(f"Cannot write the index {path}: No space left on device. The disk "
                         "is full: free some space.")

    monkeypatch.setattr(FeatureIndex, "save", refuse)
    result = invoke(runner, cli, ["index", image_store, "-o", tmp_path / "f.index"])
    one_error(result, 1, "No space left on device. The disk is full: free some space.")


def test_audio_npz_fits_evaluates_and_extracts(runner, cli, tmp_path):
    """Speech from an .npz (sample_rate and length columns) through fit, evaluate, extract."""
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd.npz"
    if not shared.exists():
        pytest.skip("the shared FSDD data is not available")
    with np.load(shared) as d:
        rows = np.arange(0, 3000, 25)[:120]  # every speaker and digit
        data = tmp_path / "speech.npz"
        np.savez(data, x=d["x"][rows], y=d["y"][rows], length=d["length"][rows],
                 sample_rate=d["sample_rate"])
    model = tmp_path / "cs.pt"
    tiny = ["--param", "backbone_kwargs={'width': 8}", "--param", "content_channels=4",
            "--param", "content_grid=2", "--param", "style_dim=4", "--param", "style_width=4",
            "--param", "decoder_width=8"]
    fit = invoke(runner, cli, ["fit", "content_style", data, "-o", model, "--max-epochs", "1",
                               "--batch-size", "16", "--random-state", "0", "-q", *tiny])
    assert fit.exit_code == 0, fit.output
    est = featurekit.load(str(model))
    assert est.input_spec_.modality == "audio" and est.input_spec_.sample_rate == 8000
    evaluated = invoke(runner, cli, ["evaluate", model, data])
    assert evaluated.exit_code == 0, evaluated.output
    assert "content_style" in evaluated.output and "no raw baseline" in evaluated.output
    out = tmp_path / "speech.h5"
    extracted = invoke(runner, cli, ["extract", model, data, "-o", out])
    assert extracted.exit_code == 0, extracted.output
    with FeatureStore(out) as store:
        assert store.shape == (120, 20) and np.isfinite(store[:]).all()
