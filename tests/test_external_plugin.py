"""The example third-party plugin, examples/featurekit-vicreg, installed the way a
user installs one and used through featurekit's public entry points (issue 5).

The package is pip-installed once into a temporary target directory, never into
this environment (that would change every other test's registry); each check
runs in a subprocess with that directory on ``PYTHONPATH``, as a fresh
interpreter discovers plugins only at start-up.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_cli import tables

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "featurekit-vicreg"
# A guard against a hung subprocess only, far above any expected run time.
HANG_GUARD_S = 600
CLI = ["-c", "from featurekit.cli import main; main()"]  # what the `featurekit` script runs


@dataclass(frozen=True)
class Installed:
    target: Path  # where pip put the package (to prepend to PYTHONPATH)
    source: Path  # the copy it was built from, tests included


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    if importlib.util.find_spec("pip") is None:
        pytest.skip(f"pip is not available to {sys.executable}, so the example plugin "
                    "cannot be installed")
    tmp = tmp_path_factory.mktemp("vicreg")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources,
    # which must not litter the checkout.
    source = tmp / "featurekit-vicreg"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    target = tmp / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return Installed(target, source)


def run(installed: Installed, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python *args`` with the installed plugin importable, from outside the checkout."""
    path = [str(installed.target), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)  # the outer run's options are not the plugin's
    return subprocess.run([sys.executable, *args], cwd=cwd or installed.target.parent, env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)


def succeeded(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_featurekit_plugins_lists_it_with_package_version_and_api(installed):
    result = run(installed, *CLI, "plugins")
    out = succeeded(result)
    methods = {row["method"]: row for row in tables(out)[0]}
    assert methods["vicreg"] == {"method": "vicreg", "family": "contrastive",
                                 "package": "featurekit-vicreg", "version": "0.1.0", "api": "1"}
    assert methods["simclr"]["package"] == "featurekit"  # the built-ins are still there
    assert "failed to load" not in out and "with a warning" not in out, out
    assert "featurekit-vicreg" not in result.stderr, result.stderr  # no PluginWarning


FIT_SCRIPT = """
import json, numpy as np, featurekit, featurekit_vicreg
from sklearn.datasets import load_digits
X, _ = load_digits(return_X_y=True)
images = (load_digits().images[:64] * 16).clip(0, 255).astype(np.uint8)
common = dict(max_epochs=2, batch_size=32, device="cpu", random_state=0, verbose=0)
table = featurekit.create("vicreg", backbone="mlp", backbone_kwargs={"hidden": (32,)},
                          expander_dim=64, **common)
image = featurekit.create("vicreg", backbone_kwargs={"width": 4}, expander_dim=32, **common)
Zt, Zi = table.fit(X[:256]).transform(X[:256]), image.fit(images).transform(images)
print(json.dumps({"module": featurekit_vicreg.__file__, "class": type(table).__name__,
                  "tabular": Zt.shape, "image": Zi.shape, "dtypes": [str(Zt.dtype), str(Zi.dtype)],
                  "finite": bool(np.isfinite(Zt).all() and np.isfinite(Zi).all()),
                  "history": sorted(table.history_)}))
"""


def test_create_builds_it_and_it_fits_and_transforms(installed):
    report = json.loads(succeeded(run(installed, "-c", FIT_SCRIPT)).splitlines()[-1])
    # Imported from the installed copy, not from the source tree.
    assert Path(report["module"]).resolve().is_relative_to(installed.target.resolve())
    assert report["class"] == "VICReg"
    assert report["tabular"] == [256, 32]  # the backbone's features, not the expander's 64
    assert report["image"][0] == 64 and report["image"][1] > 0
    assert report["dtypes"] == ["float32", "float32"] and report["finite"]
    assert {"loss", "invariance", "variance", "covariance"} <= set(report["history"])


def test_plugins_check_passes_every_conformance_check(installed):
    out = succeeded(run(installed, *CLI, "plugins", "--check", "vicreg"))
    rows = tables(out)[0]
    failed = [row for row in rows if row["result"] != "PASS"]
    assert rows and not failed, out
    assert f"vicreg: {len(rows)} passed, 0 failed" in out


def test_the_plugins_own_tests_pass_against_the_installed_copy(installed):
    # Run from the copy, so pytest reads the plugin's own configuration and the
    # src/ layout keeps the sources off sys.path: the tests import the installed package.
    result = run(installed, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
                 cwd=installed.source)
    summary = succeeded(result).strip().splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary, result.stdout
