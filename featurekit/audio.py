"""Audio DSP on batched tensors: log-mel spectrograms, masked statistics, Griffin-Lim.

Everything here works on whole batches, on whatever device the tensors are
on, with no loop over clips.

Conventions
-----------
Batches
    An :class:`AudioBatch` holds ``wave`` of shape (B, T) -- float32 in
    [-1, 1] once preprocessed, zero beyond each clip's end -- and ``lengths``
    (B,) int64, the number of valid samples of each clip. ``T`` is the
    longest clip *of the batch*. The audio input adapters
    (:func:`featurekit.data.inputs.audio_source`) make them.
STFT
    ``torch.stft`` with a periodic Hann window of ``n_fft`` samples, hop
    ``hop_length`` and ``center=False``: frame ``f`` covers samples
    ``[f * hop_length, f * hop_length + n_fft)``. A clip of ``L`` samples has
    ``1 + (L - n_fft) // hop_length`` frames (trailing samples that do not fill
    a frame are dropped), and a clip shorter than ``n_fft`` has none, which is
    an :class:`~featurekit.exceptions.InputError`.
Mask rule
    ``mask[b, f]`` is True only for frames lying wholly inside clip ``b``'s
    valid samples. No valid frame ever sees padding, so a clip's masked
    spectrogram and statistics are the same whether it is batched alone or
    beside a much longer clip: padding never leaks duration. Masked frames are
    zero in the spectrogram and excluded from every statistic.
Mel scale
    HTK (``mel = 2595 log10(1 + f / 700)``), triangular filters with peak 1 on
    the linear-frequency axis and no area normalization -- the filters of
    ``torchaudio.functional.melscale_fbanks(mel_scale="htk", norm=None)`` and
    ``librosa.filters.mel(htk=True, norm=None)``.
Log-mel
    ``log(mel power + eps)`` of the power spectrum ``|STFT|^2`` (natural log),
    computed in float32 with autocast off.
Griffin-Lim
    The fast Griffin-Lim algorithm (Perraudin, Balazs and Søndergaard, "A fast
    Griffin-Lim algorithm", WASPAA 2013; Griffin and Lim, "Signal estimation
    from modified short-time Fourier transform", IEEE TASSP 1984) with the same
    STFT convention, the inverse STFT being the least-squares overlap-add.

Examples
--------
>>> import torch
>>> from featurekit.audio import AudioBatch, LogMel, masked_mean_std
>>> wave = torch.zeros(2, 4000)
>>> wave[0, :4000] = torch.sin(torch.arange(4000) * 0.3)
>>> wave[1, :2500] = torch.sin(torch.arange(2500) * 0.1)
>>> batch = AudioBatch(wave, torch.tensor([4000, 2500]))
>>> spec, mask = LogMel(8000, n_fft=256, hop_length=64, n_mels=32)(batch)
>>> spec.shape, mask.sum(dim=1).tolist()
(torch.Size([2, 32, 59]), [59, 36])
>>> mean, std = masked_mean_std(spec, mask)
>>> mean.shape
torch.Size([2, 32])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from featurekit.exceptions import InputError, ParameterError

__all__ = ["AudioBatch", "LogMel", "frame_mask", "griffin_lim", "masked_instance_norm",
           "masked_mean_std", "mel_filterbank", "mel_to_linear", "n_frames",
           "spectral_convergence"]


@dataclass
class AudioBatch:
    """A batch of clips padded with zeros to its longest one.

    Parameters
    ----------
    wave : Tensor of shape (B, T)
        The samples; zero beyond each clip's length. float32 in [-1, 1] once
        preprocessed (raw batches from int16 input are int16).
    lengths : Tensor of shape (B,)
        int64, the number of valid samples of each clip (at most ``T``).
    index : Tensor of shape (B,) or None, default=None
        The clips' rows in the data set, named in error messages.
    """

    wave: torch.Tensor
    lengths: torch.Tensor
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.wave.shape[0])

    @property
    def device(self) -> torch.device:
        return self.wave.device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AudioBatch:
        """The batch with ``wave`` and ``lengths`` on ``device`` (``index`` stays put)."""
        return AudioBatch(self.wave.to(device, non_blocking=non_blocking),
                          self.lengths.to(device, non_blocking=non_blocking), self.index)


# -- mel filterbank ------------------------------------------------------------

def _hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular HTK mel filters over the bins of an ``n_fft``-point real FFT.

    Parameters
    ----------
    n_fft : int
        FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
    n_mels : int
        Number of filters.
    sample_rate : int
        Sampling rate in Hz.
    f_min, f_max : float, default=0.0 and None
        Lowest and highest frequency in Hz; ``f_max=None`` is ``sample_rate / 2``.

    Returns
    -------
    Tensor of shape (n_mels, n_fft // 2 + 1)
        float32; row ``m`` rises linearly from mel point ``m`` to a peak of 1
        at point ``m + 1`` and falls to 0 at point ``m + 2`` (``n_mels + 2``
        points equally spaced on the HTK mel scale between ``f_min`` and
        ``f_max``). Filters narrower than an FFT bin may miss every bin
        centre; a warning says so.
    """
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else float(f_max)
    if int(n_fft) < 2 or int(n_mels) < 1:
        raise ParameterError(f"mel_filterbank needs n_fft >= 2 and n_mels >= 1; got "
                             f"n_fft={n_fft}, n_mels={n_mels}")
    if not 0.0 <= f_min < f_max <= nyquist:
        raise ParameterError(f"mel_filterbank needs 0 <= f_min < f_max <= sample_rate / 2 "
                             f"({nyquist:g} Hz); got f_min={f_min}, f_max={f_max}")
    bins = torch.linspace(0.0, nyquist, n_fft // 2 + 1, dtype=torch.float64)
    points = _mel_to_hz(torch.linspace(float(_hz_to_mel(f_min)), float(_hz_to_mel(f_max)),
                                       n_mels + 2, dtype=torch.float64))
    widths = points[1:] - points[:-1]
    slopes = points[None, :] - bins[:, None]                  # (n_bins, n_mels + 2)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0).T
    empty = (fb.max(dim=1).values == 0).nonzero().flatten().tolist()
    if empty:
        warnings.warn(f"mel_filterbank: {len(empty)} of {n_mels} mel filters (e.g. {empty[:3]}) "
                      f"fall between the FFT bins of n_fft={n_fft} and are all zero; use fewer "
                      "mels or a larger n_fft", stacklevel=2)
    return fb.to(torch.float32)


# -- framing and masks -----------------------------------------------------------

def n_frames(lengths: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Frames lying wholly inside clips of ``lengths`` samples (0 for clips shorter than
    ``n_fft``), under the ``center=False`` convention of the module docstring."""
    lengths = torch.as_tensor(lengths)
    return torch.where(lengths >= n_fft, (lengths - n_fft) // hop_length + 1,
                       torch.zeros_like(lengths))


def frame_mask(lengths: torch.Tensor, n_fft: int, hop_length: int,
               total_frames: int) -> torch.Tensor:
    """Boolean mask of shape (B, total_frames): True for frames wholly inside each clip."""
    lengths = torch.as_tensor(lengths)
    frames = torch.arange(total_frames, device=lengths.device)
    return frames[None, :] < n_frames(lengths, n_fft, hop_length)[:, None]


def check_lengths(lengths: torch.Tensor, n_fft: int,
                  index: torch.Tensor | None = None) -> None:
    """Raise :class:`InputError` if a clip is shorter than one STFT frame (``n_fft``)."""
    short = torch.as_tensor(lengths) < n_fft
    if bool(short.any()):
        i = int(short.nonzero()[0, 0])
        row = i if index is None else int(index[i])
        where = f"clip {row}" if index is not None else f"clip {i} of the batch"
        raise InputError(f"{where} has {int(lengths[i])} samples, fewer than one STFT frame "
                         f"(n_fft={n_fft}); drop or zero-pad clips shorter than {n_fft} samples, "
                         "or use a smaller n_fft")


# -- log-mel spectrogram ------------------------------------------------------------

class LogMel(nn.Module):
    """Batched log-mel spectrogram with a frame mask (conventions: module docstring).

    Parameters
    ----------
    sample_rate : int
        Sampling rate in Hz.
    n_fft : int, default=400
        STFT frame and FFT size in samples (a periodic Hann window).
    hop_length : int or None, default=None
        Samples between frames; ``None`` is ``n_fft // 4``.
    n_mels : int, default=64
        Mel bands.
    f_min, f_max : float, default=0.0 and None
        Band edges in Hz (``None``: ``sample_rate / 2``).
    eps : float, default=1e-6
        Added to the mel power before the log.

    Examples
    --------
    >>> import torch
    >>> batch = AudioBatch(torch.zeros(2, 1000), torch.tensor([1000, 300]))
    >>> LogMel(8000, n_fft=400)(batch)
    Traceback (most recent call last):
    ...
    featurekit.exceptions.InputError: clip 1 of the batch has 300 samples, fewer than one STFT \
frame (n_fft=400); drop or zero-pad clips shorter than 400 samples, or use a smaller n_fft
    """

    def __init__(self, sample_rate: int, n_fft: int = 400, hop_length: int | None = None,
                 n_mels: int = 64, f_min: float = 0.0, f_max: float | None = None,
                 eps: float = 1e-6):
        super().__init__()
        self.sample_rate, self.n_fft, self.n_mels = int(sample_rate), int(n_fft), int(n_mels)
        self.hop_length = int(hop_length) if hop_length is not None else self.n_fft // 4
        if self.hop_length < 1:
            raise ParameterError(f"LogMel needs hop_length >= 1; got {hop_length}")
        self.eps = float(eps)
        # Constants, rebuilt from the parameters: not part of a model's state_dict.
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(self.n_fft, self.n_mels,
                                                          self.sample_rate, f_min, f_max),
                             persistent=False)

    def forward(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel spectrogram and frame mask of a batch.

        Parameters
        ----------
        batch : AudioBatch
            float waves (B, T) on this module's device and their lengths.

        Returns
        -------
        spec : Tensor of shape (B, n_mels, n_frames)
            float32 ``log(mel power + eps)``; zero in masked frames.
        mask : Tensor of shape (B, n_frames)
            bool, True for frames wholly inside the clip.
        """
        check_lengths(batch.lengths, self.n_fft, batch.index)
        with torch.autocast(batch.wave.device.type, enabled=False):
            power = _stft(batch.wave.float(), self.n_fft, self.hop_length, self.window).abs().square()
            mel = torch.matmul(self.filterbank, power)
            mask = frame_mask(batch.lengths, self.n_fft, self.hop_length, mel.shape[-1])
            spec = torch.log(mel + self.eps).masked_fill(~mask[:, None, :], 0.0)
        return spec, mask

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}, n_mels={self.n_mels}, eps={self.eps:g}")


# -- masked statistics ----------------------------------------------------------------

def masked_mean_std(x: torch.Tensor, mask: torch.Tensor,
                    eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over the valid frames only.

    Parameters
    ----------
    x : Tensor of shape (B, C, F)
    mask : Tensor of shape (B, F)
        bool, True for valid frames; whatever ``x`` holds elsewhere is ignored.
    eps : float, default=1e-5
        ``std = sqrt(var + eps)`` (population variance), so its gradient stays finite.

    Returns
    -------
    mean, std : Tensor of shape (B, C)
        Clips with no valid frame get mean 0 and std ``sqrt(eps)``.
    """
    if x.ndim != 3 or mask.shape != (x.shape[0], x.shape[2]):
        raise ValueError(f"masked_mean_std needs x (B, C, F) and mask (B, F); got "
                         f"{tuple(x.shape)} and {tuple(mask.shape)}")
    valid = mask[:, None, :]
    count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(x.dtype)   # (B, 1)
    mean = torch.where(valid, x, 0.0).sum(dim=2) / count
    centred = torch.where(valid, x - mean[:, :, None], 0.0)
    var = centred.square().sum(dim=2) / count
    return mean, (var + eps).sqrt()


def masked_instance_norm(x: torch.Tensor, mask: torch.Tensor,
                         eps: float = 1e-5) -> torch.Tensor:
    """Instance normalization over valid frames: ``(x - mean) / std`` per clip and
    channel with :func:`masked_mean_std`'s statistics; masked frames become 0."""
    mean, std = masked_mean_std(x, mask, eps)
    out = (x - mean[:, :, None]) / std[:, :, None]
    return torch.where(mask[:, None, :], out, 0.0)


# -- back to waveforms -------------------------------------------------------------------

def mel_to_linear(mel_power: torch.Tensor, filterbank: torch.Tensor, *,
                  n_iter: int = 100) -> torch.Tensor:
    """Non-negative least-squares linear power spectrum of a mel power spectrum.

    Starts from the pseudo-inverse solution ``pinv(filterbank) @ mel_power``
    clamped at 0 (``n_iter=0`` returns just that), then refines it with
    ``n_iter`` multiplicative updates for non-negative least squares (Lee and
    Seung, "Algorithms for non-negative matrix factorization", NIPS 2001),
    which keep it non-negative and move it toward the least-squares fit among
    non-negative spectra. The clamped pseudo-inverse alone leaves the bins of
    quiet bands at 0: measured on a chirp and two tones at 8 kHz (64 mels,
    ``n_fft=256``, ``tests/test_audio.py``), the log-mels of the Griffin-Lim
    audio are 0.77 nats from the original with the refined spectra (mean over
    bands within 60 dB of the peak), 2.47 nats with the clamped pseudo-inverse.

    Parameters
    ----------
    mel_power : Tensor of shape (B, n_mels, F)
        Mel power (``exp(log_mel) - eps`` for :class:`LogMel`'s output).
    filterbank : Tensor of shape (n_mels, n_fft // 2 + 1)
        The filters that made it (``LogMel.filterbank``).
    n_iter : int, default=100
        Multiplicative refinement steps.

    Returns
    -------
    Tensor of shape (B, n_fft // 2 + 1, F)
        float32, non-negative.
    """
    with torch.autocast(mel_power.device.type, enabled=False):
        fb = filterbank.float()
        mel_power = mel_power.float().clamp_min(0.0)
        pinv = torch.linalg.pinv(fb.double()).float()
        linear = torch.matmul(pinv, mel_power).clamp_min(0.0)
        if n_iter <= 0:
            return linear
        # Multiplicative updates cannot leave 0: start every bin slightly above it.
        floor = 1e-6 * mel_power.amax(dim=(1, 2), keepdim=True).clamp_min(1e-20)
        linear = linear.clamp_min(0.0) + floor
        target, gram = torch.matmul(fb.T, mel_power), fb.T @ fb
        for _ in range(n_iter):
            linear = linear * target / (torch.matmul(gram, linear) + 1e-20)
        return linear


def _stft(wave: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    return torch.stft(wave, n_fft, hop_length, window=window, center=False,
                      return_complex=True)


def _istft(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor,
           length: int) -> torch.Tensor:
    """Least-squares overlap-add inverse of :func:`_stft` (Griffin and Lim 1984, eq. 6).

    ``torch.istft`` refuses ``center=False`` with a Hann window (its envelope is
    zero at the first sample), so the overlap-add is done with ``fold``; the
    envelope is floored at 1e-3 of its peak, which only touches the samples
    within about ``n_fft / 17`` of either end, where every frame's weight is small.
    """
    n = spec.shape[-1]
    frames = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]   # (B, n_fft, F)
    total = n_fft + hop_length * (n - 1)
    fold = dict(output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop_length))
    wave = F.fold(frames, **fold)[:, 0, 0]
    envelope = F.fold(window.square()[None, :, None].expand(1, n_fft, n), **fold)[0, 0, 0]
    wave = wave / envelope.clamp_min(1e-3 * float(envelope.max()))
    if length > total:
        return F.pad(wave, (0, length - total))
    return wave[:, :length]


def griffin_lim(magnitude: torch.Tensor, *, n_fft: int, hop_length: int, n_iter: int = 32,
                momentum: float = 0.99, length: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Waveforms whose STFT magnitude approaches ``magnitude``: fast Griffin-Lim.

    Each iteration projects onto consistent spectrograms (inverse STFT, then
    STFT) and onto the given magnitude, then extrapolates with ``momentum``
    (``t_n = c_n + momentum * (c_n - c_{n-1})``, Perraudin et al. 2013; 0 gives
    the original Griffin-Lim). Batched; the STFT convention is the module's
    (periodic Hann, ``center=False``).

    Parameters
    ----------
    magnitude : Tensor of shape (B, n_fft // 2 + 1, F)
        Linear STFT magnitudes (the square root of a power spectrum).
    n_fft, hop_length : int
        The STFT that the magnitudes come from.
    n_iter : int, default=32
        Iterations.
    momentum : float, default=0.99
        The fast Griffin-Lim extrapolation weight, in [0, 1).
    length : int or None, default=None
        Output samples; ``None`` is ``n_fft + hop_length * (F - 1)``.
    generator : torch.Generator or None, default=None
        Draws the random initial phases (on ``magnitude``'s device).

    Returns
    -------
    Tensor of shape (B, length)
        float32 waveforms.

    References
    ----------
    N. Perraudin, P. Balazs and P. L. Søndergaard, "A fast Griffin-Lim
    algorithm", IEEE WASPAA 2013. D. Griffin and J. Lim, "Signal estimation
    from modified short-time Fourier transform", IEEE TASSP 32(2), 1984.
    """
    if magnitude.ndim != 3 or magnitude.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"griffin_lim needs magnitudes of shape (B, n_fft // 2 + 1 = "
                         f"{n_fft // 2 + 1}, F); got {tuple(magnitude.shape)}")
    if not 0.0 <= momentum < 1.0:
        raise ParameterError(f"griffin_lim needs momentum in [0, 1); got {momentum}")
    with torch.autocast(magnitude.device.type, enabled=False):
        magnitude = magnitude.float()
        window = torch.hann_window(n_fft, device=magnitude.device)
        total = n_fft + hop_length * (magnitude.shape[-1] - 1)
        phase = torch.rand(magnitude.shape, generator=generator, device=magnitude.device)
        t = torch.polar(magnitude, 2 * math.pi * phase)
        previous = t
        for _ in range(n_iter):
            rebuilt = _stft(_istft(t, n_fft, hop_length, window, total), n_fft, hop_length,
                            window)
            c = magnitude * rebuilt / (rebuilt.abs() + 1e-16)
            t = c + momentum * (c - previous)
            previous = c
        return _istft(previous, n_fft, hop_length, window, total if length is None else length)


def spectral_convergence(magnitude: torch.Tensor, wave: torch.Tensor, *, n_fft: int,
                         hop_length: int) -> torch.Tensor:
    """``||  |STFT(wave)| - magnitude ||_F / ||magnitude||_F`` per clip, shape (B,).

    The usual Griffin-Lim quality measure (0 is a perfect match); ``wave`` is
    cut or zero-padded to the length ``magnitude``'s frames span.
    """
    total = n_fft + hop_length * (magnitude.shape[-1] - 1)
    wave = F.pad(wave, (0, max(0, total - wave.shape[-1])))[:, :total].float()
    window = torch.hann_window(n_fft, device=wave.device)
    got = _stft(wave, n_fft, hop_length, window).abs()
    return ((got - magnitude).flatten(1).norm(dim=1)
            / magnitude.flatten(1).norm(dim=1).clamp_min(1e-12))
