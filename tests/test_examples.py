"""The example scripts and benchmarks run end to end (quick settings, no timings checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import featurekit.datasets

ROOT = Path(__file__).resolve().parents[1]
# A guard against a hung subprocess only, far above any expected run time.
HANG_GUARD_S = 900


def run_script(path: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / path), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, f"{path} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_sklearn_pipeline_example_quick():
    out = run_script("examples/sklearn_pipeline.py", "--quick")
    assert "mean_test_score" in out and "std_test_score" in out and "mean_fit_time" in out
    assert out.count("logisticregression__C=") == 2  # one table row per candidate
    assert "best params: {'logisticregression__C':" in out
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0


def test_image_search_example_quick(tmp_path):
    out = run_script("examples/image_search.py", "--quick", "-o", str(tmp_path))
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| SimCLR") or line.startswith("| raw pixels")}
    assert set(rows) == {"SimCLR small_cnn", "raw pixels"}
    for line in rows.values():
        precision = float(line.split("|")[4].strip().rstrip("%")) / 100
        assert 0.0 < precision <= 1.0
    assert out.count("test digit ") == 4
    assert f"featurekit search {tmp_path / 'train.index'} {tmp_path / 'query.png'}" in out
    assert {"simclr.pt", "train.h5", "train.index", "neighbours.png", "query.png"} <= {
        p.name for p in tmp_path.iterdir()}


def test_bench_transform_quick():
    # The MNIST copy shipped with featurekit, so the test needs no ../shared/data.
    data_dir = Path(featurekit.datasets.__file__).parent
    out = run_script("benchmarks/bench_transform.py", "--n", "256", "--repeats", "1",
                     "--backbone", "small_cnn", "--data", "mnist", "--data-dir", str(data_dir))
    assert "features match: True" in out
    assert "ratio featurekit/torch" in out
