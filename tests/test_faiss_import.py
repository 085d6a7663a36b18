"""torch and faiss ship their own OpenMP; both import orders must work."""

from __future__ import annotations

import subprocess
import sys

import pytest

SEARCH = ("import numpy as np; x = np.random.default_rng(0).random((50, 8), dtype=np.float32); "
          "index = faiss.IndexFlatL2(8); index.add(x); d, i = index.search(x[:3], 1); "
          "assert list(i[:, 0]) == [0, 1, 2]; torch.ones(2) @ torch.ones(2); print('ok')")


@pytest.mark.parametrize("order", ["torch, faiss", "faiss, torch"])
def test_torch_and_faiss_import_in_either_order(order):
    out = subprocess.run([sys.executable, "-c", f"import {order}; {SEARCH}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
