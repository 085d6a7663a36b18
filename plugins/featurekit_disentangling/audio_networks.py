"""ContentStyle's audio networks: 1-D convolutions over the frames of a log-mel spectrogram,
every statistic masked to each clip's valid frames (AdaIN-VC, Chou et al. 2019).

All modules take a spectrogram ``(B, C, F)`` and its frame mask ``(B, F)``
(:class:`featurekit.audio.LogMel`'s conventions). Padding never reaches a
valid frame: masked frames are set to zero before every convolution, so a
convolution near a clip's end sees exactly the zeros it would see at the end
of the clip alone, and every normalization and pooling uses the valid frames
only. A clip's features are therefore the same batched beside a much longer
clip as alone (no duration leak).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from featurekit.audio import AudioBatch, LogMel, masked_instance_norm, masked_mean_std


def _zero_masked(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return h.masked_fill(~mask[:, None, :], 0.0)


class SpectrogramFrontEnd(nn.Module):
    """Waveforms -> log-mel (:class:`~featurekit.audio.LogMel`) -> standardized per band.

    The per-band mean and standard deviation are running averages over every
    valid frame seen in training (a cumulative average, like batch norm with
    ``momentum=None``, but masked), stored with the model; in eval mode they
    are a fixed affine map, so no clip's output depends on its batch. The
    model works in this standardized space; :meth:`to_log_mel` goes back.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int):
        super().__init__()
        self.log_mel = LogMel(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.register_buffer("frames_seen", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("mean_square", torch.ones(n_mels))

    def _std(self) -> torch.Tensor:
        return (self.mean_square - self.mean.square()).clamp_min(1e-4).sqrt()

    def forward(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized log-mel ``(B, n_mels, F)`` (zero in masked frames) and mask ``(B, F)``."""
        spec, mask = self.log_mel(batch)
        if self.training:
            with torch.no_grad():
                n = mask.sum().float()
                valid = mask[:, None, :].float()
                total = self.frames_seen + n
                weight = n / total.clamp_min(1.0)
                mean = (spec * valid).sum(dim=(0, 2)) / n.clamp_min(1.0)
                square = (spec.square() * valid).sum(dim=(0, 2)) / n.clamp_min(1.0)
                self.mean += weight * (mean - self.mean)
                self.mean_square += weight * (square - self.mean_square)
                self.frames_seen.copy_(total)
        x = (spec - self.mean[None, :, None]) / self._std()[None, :, None]
        return _zero_masked(x, mask), mask

    def to_log_mel(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Model space -> log-mel (natural log of mel power), zero in masked frames."""
        out = x.float() * self._std()[None, :, None] + self.mean[None, :, None]
        return _zero_masked(out, mask)


class MaskedConv(nn.Module):
    """A same-length 1-D convolution whose input is zeroed beyond each clip's frames."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.conv(_zero_masked(h, mask))


class AudioContentEncoder(nn.Module):
    """Conv-masked IN-ReLU blocks over time, then a 1x1 conv to ``channels`` and masked IN.

    The first block maps the ``n_mels`` bands to ``width`` channels, two
    residual blocks follow (kernel 5, so 13 frames of receptive field). Instance
    normalization without affine parameters, over the valid frames
    (:func:`featurekit.audio.masked_instance_norm`), follows every
    convolution: each channel's per-clip mean and scale, the global statistics
    a speaker's voice puts there, are removed (AdaIN-VC's content encoder).
    """

    def __init__(self, n_mels: int, width: int, channels: int):
        super().__init__()
        self.stem = MaskedConv(n_mels, width)
        self.blocks = nn.ModuleList(MaskedConv(width, width) for _ in range(2))
        self.proj = nn.Conv1d(width, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = F.relu(masked_instance_norm(self.stem(x, mask), mask))
        for block in self.blocks:
            h = h + F.relu(masked_instance_norm(block(h, mask), mask))
        return masked_instance_norm(self.proj(h), mask)


class AudioStyleEncoder(nn.Module):
    """Conv-ReLU blocks (no normalization), masked global mean over frames, Linear.

    Widths ``w, 2w, 2w``, kernel 5. No normalization, so every channel's
    per-clip statistics reach the code, as AdaIN-VC's speaker encoder.
    """

    def __init__(self, n_mels: int, width: int, style_dim: int):
        super().__init__()
        widths = (width, 2 * width, 2 * width)
        self.convs = nn.ModuleList(MaskedConv(c_in, c_out)
                                   for c_in, c_out in zip((n_mels, *widths[:-1]), widths))
        self.head = nn.Linear(widths[-1], style_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = F.relu(conv(h, mask))
        mean, _ = masked_mean_std(h, mask)
        return self.head(mean)


def masked_adain(h: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor,
                 shift: torch.Tensor) -> torch.Tensor:
    """Adaptive instance norm over the valid frames: ``scale * (h - mean) / std + shift``."""
    return _zero_masked(masked_instance_norm(h, mask) * scale[:, :, None] + shift[:, :, None],
                        mask)


class AudioAdaINDecoder(nn.Module):
    """A content map ``(B, channels, F)`` and a style code -> a spectrogram ``(B, n_mels, F)``.

    A convolution from the content map to ``width`` channels, three blocks of
    masked AdaIN (scale ``1 + a``, shift ``b``, both from a two-layer MLP of
    the style code), ReLU and convolution, then a convolution to the bands.
    """

    def __init__(self, channels: int, n_mels: int, style_dim: int, width: int, n_blocks: int = 3):
        super().__init__()
        self.stem = MaskedConv(channels, width)
        self.convs = nn.ModuleList(MaskedConv(width, width) for _ in range(n_blocks))
        self.out = MaskedConv(width, n_mels)
        self.width, self.n_blocks = width, n_blocks
        hidden = max(64, 2 * style_dim)
        self.mlp = nn.Sequential(nn.Linear(style_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * width * n_blocks))

    def forward(self, content: torch.Tensor, style: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        params = self.mlp(style.float()).view(len(style), self.n_blocks, 2, self.width)
        h = self.stem(content, mask)
        for i, conv in enumerate(self.convs):
            h = conv(F.relu(masked_adain(h, mask, 1 + params[:, i, 0], params[:, i, 1])), mask)
        return _zero_masked(self.out(F.relu(h), mask), mask)


def segment_pool(x: torch.Tensor, mask: torch.Tensor, segments: int) -> torch.Tensor:
    """Mean of ``x`` over ``segments`` equal spans of each clip's valid frames, flattened.

    Span ``s`` of a clip with ``n`` valid frames covers frames
    ``[floor(s n / S), ceil((s + 1) n / S))``, as ``adaptive_avg_pool1d`` on
    the valid frames alone (spans overlap or repeat a frame when ``n < S``),
    so the result depends on no padding and has a fixed size whatever the
    clip's length: ``(B, C * segments)``, channel-major.
    """
    n = mask.sum(dim=1).to(torch.long)[:, None]                        # (B, 1)
    s = torch.arange(segments, device=x.device)[None, :]               # (1, S)
    start = torch.div(s * n, segments, rounding_mode="floor")
    end = -torch.div(-(s + 1) * n, segments, rounding_mode="floor")   # ceil
    frames = torch.arange(x.shape[-1], device=x.device)[None, None, :]
    inside = (frames >= start[..., None]) & (frames < end[..., None])  # (B, S, F)
    weights = inside.to(x.dtype) / (end - start).clamp_min(1).to(x.dtype)[..., None]
    return torch.einsum("bcf,bsf->bcs", _zero_masked(x, mask), weights).flatten(1)


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the valid frames (every band) only."""
    valid = mask[:, None, :].expand_as(target)
    return (output.float() - target.float()).abs()[valid].mean()
