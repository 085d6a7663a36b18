"""Raw batch -> model input, batched on the device.

Images: scale to [0, 1], repeat grey to RGB when pretrained weights need it,
resize to the working size, then (after any augmentation) normalize with the
per-channel mean and std. Tabular rows: standardize with the fitted mean and
scale. Kept apart from the method so a method never sees raw data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F


@dataclass
class InputSpec:
    """The fitted description of the input; JSON-serializable (saved with a model)."""

    modality: str
    sample_shape: tuple[int, ...]
    scale: float
    working_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        return cls(d["modality"], tuple(d["sample_shape"]), float(d["scale"]),
                   tuple(d["working_shape"]), tuple(d["mean"]), tuple(d["std"]))


class Preprocessor:
    """Applies an :class:`InputSpec` to raw batches on ``device``."""

    def __init__(self, spec: InputSpec, device: torch.device, channels_last: bool = False):
        self.spec, self.device, self.channels_last = spec, device, channels_last
        shape = (1, -1, 1, 1) if spec.modality == "image" else (1, -1)
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(shape)

    def base(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw batch -> float on the device: images in [0, 1] at the working size."""
        x = raw.to(self.device, non_blocking=True)
        if self.spec.modality != "image":
            return (x.float() - self.mean).div_(self.std)
        if x.dtype != torch.float32:
            x = x.float().div_(self.spec.scale)  # a fresh tensor: scale it in place
        elif self.spec.scale != 1.0:
            x = x / self.spec.scale  # never modify the caller's float data
        c, h, w = self.spec.working_shape
        if x.shape[1] != c:
            x = x.expand(-1, c, -1, -1)
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented or clean base batch -> the backbone's input."""
        if self.spec.modality != "image":
            return x
        x = (x - self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        return self.finish(self.base(raw))
