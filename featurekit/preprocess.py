"""Raw batch -> model input, batched on the device.

Images: scale to [0, 1], repeat grey to RGB when pretrained weights need it,
resize to the working size, then (after any augmentation) normalize with the
per-channel mean and std. Tabular rows: standardize with the fitted mean and
scale. Audio: move the :class:`~featurekit.audio.AudioBatch` to the device as
float32 in [-1, 1] (int16 PCM divided by 32768); the method makes its own
spectrograms. Kept apart from the method so a method never sees raw data.

:meth:`Preprocessor.inverse` goes the other way, for methods that output
inputs (decoders, generators): a model-space batch back to the convention of
the data given to ``fit`` (its size, channels, layout, scale and dtype).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from featurekit.audio import AudioBatch


@dataclass
class InputSpec:
    """The fitted description of the input; JSON-serializable (saved with a model).

    ``sample_shape`` is one raw sample as ``(C, H, W)`` (or ``(n_features,)``),
    ``working_shape`` what the backbone takes, ``scale`` the divisor that maps
    raw pixel values into [0, 1], ``mean`` and ``std`` the normalization.
    ``layout``, ``flat`` and ``dtype`` record how raw images were given: the
    channel axis (``"none"`` for (N, H, W), ``"first"`` for (N, C, H, W),
    ``"last"`` for (N, H, W, C)), whether ``image_shape=`` flattened them into
    rows, and ``"uint8"`` or ``"float32"``; outputs go back the same way
    (:meth:`Preprocessor.inverse`).

    Audio (``modality="audio"``): ``sample_shape`` and ``working_shape`` are
    ``(max_length,)``, ``scale`` 32768 for int16 input and 1 for float,
    ``dtype`` ``"int16"`` or ``"float32"``, ``sample_rate`` the rate in Hz and
    ``max_length`` / ``min_length`` the longest and shortest clip seen in fit
    (in samples); these three are None for other modalities.
    """

    modality: str
    sample_shape: tuple[int, ...]
    scale: float
    working_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = "first"
    flat: bool = False
    dtype: str = "float32"
    sample_rate: int | None = None
    max_length: int | None = None
    min_length: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        # Models saved before layout, flat and dtype were recorded get the defaults.
        return cls(d["modality"], tuple(d["sample_shape"]), float(d["scale"]),
                   tuple(d["working_shape"]), tuple(d["mean"]), tuple(d["std"]),
                   d.get("layout", "first"), bool(d.get("flat", False)),
                   d.get("dtype", "float32"), d.get("sample_rate"), d.get("max_length"),
                   d.get("min_length"))


class Preprocessor:
    """Applies an :class:`InputSpec` to raw batches on ``device``."""

    def __init__(self, spec: InputSpec, device: torch.device, channels_last: bool = False):
        self.spec, self.device, self.channels_last = spec, device, channels_last
        shape = (1, -1, 1, 1) if spec.modality == "image" else (1, -1)
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(shape)

    def base(self, raw: Any) -> Any:
        """Raw batch -> float on the device: images in [0, 1] at the working size,
        audio as an :class:`~featurekit.audio.AudioBatch` of float32 in [-1, 1]."""
        if self.spec.modality == "audio":
            batch = raw.to(self.device, non_blocking=True)
            wave = batch.wave
            if wave.dtype == torch.int16:
                wave = wave.float().div_(32768.0)
            elif wave.dtype != torch.float32:
                wave = wave.float()
            return AudioBatch(wave, batch.lengths, batch.index)
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

    def finish(self, x: Any) -> Any:
        """Augmented or clean base batch -> the backbone's input."""
        if self.spec.modality != "image":
            return x
        x = (x - self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, raw: Any) -> Any:
        return self.finish(self.base(raw))

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space batch -> the raw input's convention, on the device.

        The inverse of ``__call__`` as far as it can be: images are
        un-normalized, clipped to [0, 1], averaged back to one channel if grey
        input was repeated to RGB, resized back to the fitted sample size,
        multiplied by the input's scale (rounded to uint8 for uint8 input) and
        laid out as the input was ((N, H, W), (N, H, W, C) or (N, C, H, W),
        or flattened rows with ``image_shape=``). Tabular rows are
        un-standardized. Audio waves (B, T) are clipped to [-1, 1] and, for
        int16 input, scaled and rounded back to int16.

        Parameters
        ----------
        x : Tensor of shape (n, *working_shape)
            What a decoder or generator outputs: a batch in the space of the
            backbone's input (normalized images, standardized rows).

        Returns
        -------
        Tensor
            uint8 or float32, shaped like ``n`` raw samples given to ``fit``.

        Examples
        --------
        >>> import torch
        >>> spec = InputSpec("image", (1, 4, 4), 255.0, (1, 8, 8), (0.5,), (0.25,),
        ...                  layout="none", dtype="uint8")
        >>> prep = Preprocessor(spec, torch.device("cpu"))
        >>> raw = torch.full((2, 1, 4, 4), 200, dtype=torch.uint8)
        >>> back = prep.inverse(prep(raw))
        >>> back.shape, back.dtype, int(back[0, 0, 0])
        (torch.Size([2, 4, 4]), torch.uint8, 200)
        """
        if self.spec.modality == "audio":
            x = x.float().clamp(-1.0, 1.0)
            if self.spec.dtype == "int16":
                x = (x * 32768.0).round_().clamp_(-32768, 32767).to(torch.int16)
            return x
        x = x.float() * self.std + self.mean
        if self.spec.modality != "image":
            return x
        c, h, w = self.spec.sample_shape
        x = x.clamp(0.0, 1.0)
        if x.shape[1] != c:  # grey input repeated to RGB for the backbone
            x = x.mean(dim=1, keepdim=True)
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True,
                              align_corners=False).clamp_(0.0, 1.0)
        x = x * self.spec.scale
        if self.spec.dtype == "uint8":
            x = x.round_().to(torch.uint8)
        if self.spec.layout == "none":
            x = x[:, 0]
        elif self.spec.layout == "last":
            x = x.permute(0, 2, 3, 1)
        return x.reshape(len(x), -1) if self.spec.flat else x.contiguous()


class Normalize(nn.Module):
    """Pixels in [0, 1] <-> model space (the fitted per-channel mean and std), as a module.

    For methods whose networks output pixels (decoders, generators) and must
    hand the rest of the model, and :meth:`Preprocessor.inverse`, model-space
    batches. Build it from the fitted spec, ``Normalize(spec.mean, spec.std)``;
    the constants are not saved as state.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(shape), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> model space."""
        return (pixels - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> [0, 1]."""
        return x * self.std + self.mean
