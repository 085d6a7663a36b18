"""The ``groups=`` fit argument: weak supervision naming who (or which domain) made each sample.

ContentStyle learns unsupervised when ``groups`` is None. With groups, each
value is a speaker, a domain or a writer: a factor the style code should
hold and the content code should not. This module checks and encodes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featurekit.exceptions import InputError


def encode_groups(groups: Any, owner: str) -> tuple[np.ndarray, torch.Tensor]:
    """The distinct group values (sorted) and each sample's code, as a CPU int64 tensor.

    Raises
    ------
    InputError
        ``groups`` is not one value per sample (1-D), or has a single distinct
        value (nothing to tell apart).
    """
    values = np.asarray(groups)
    if values.ndim != 1:
        raise InputError(f"groups= must be one value per sample (a 1-D array); got an array "
                         f"of shape {values.shape}")
    if len(values) == 0:
        raise InputError("groups= is empty (0 values); give one value per sample")
    distinct, codes = np.unique(values, return_inverse=True)
    if len(distinct) < 2:
        raise InputError(
            f"groups= has one value ({distinct[0]!r}) for all {len(values)} samples; "
            f"{owner}'s weak supervision tells groups apart (speakers, domains), so it needs "
            "at least two. Fit without groups= for the unsupervised mode")
    return distinct, torch.as_tensor(codes.reshape(-1), dtype=torch.long)


def check_length(codes: torch.Tensor, n_samples: int) -> None:
    """Raise an InputError unless there is one group per sample."""
    if len(codes) != n_samples:
        raise InputError(f"X and groups have different lengths: n_samples={n_samples}, "
                         f"len(groups)={len(codes)}")
