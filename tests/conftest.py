import sys
from pathlib import Path

import pytest
import torch
from torchvision.models._api import WeightsEnum

sys.path.insert(0, str(Path(__file__).parent))

# The suite's models are tiny: one intra-op thread is as fast, and it avoids OpenMP
# spin-waiting when the runner's cores are shared (a tiny fit was ~50x slower with
# two threads on a busy 2-core box). Subprocesses that must reproduce the parent's
# floats bit for bit set the same (see test_training.CHILD).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may download weights: these machines have no network."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download torchvision weights")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
