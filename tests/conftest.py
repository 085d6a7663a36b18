import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

# The suite's models are tiny: one intra-op thread is as fast, and it avoids OpenMP
# spin-waiting when the runner's cores are shared. Subprocesses that must reproduce
# the parent's floats bit for bit set the same (see test_training.CHILD).
torch.set_num_threads(1)
