"""Audio: the DSP module (featurekit.audio) and the audio input path of the core.

The DSP tests use sines and chirps (exact, known spectra); the end-to-end tests
fit a tiny test-only audio method on real spoken digits (FSDD, from
``../shared/data``) given three ways: an int16 array with ``modality="audio"``,
a list of 1-D clips, and :class:`featurekit.data.Waveforms` with lengths.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from torch import nn

import featurekit
from featurekit.audio import (
    AudioBatch,
    LogMel,
    griffin_lim,
    masked_instance_norm,
    masked_mean_std,
    mel_filterbank,
    mel_to_linear,
    spectral_convergence,
)
from featurekit.base import AUDIO_CONSTRAINTS, FeatureExtractor, store_params
from featurekit.data import Waveforms
from featurekit.data.inputs import audio_source
from featurekit.exceptions import InputError, ParameterError
from featurekit.method import OptimizerSpec

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR = 8000


def tone(freq: float, n: int, sr: int = SR) -> torch.Tensor:
    return 0.5 * torch.sin(2 * math.pi * freq * torch.arange(n) / sr)


def chirp(n: int, sr: int = SR) -> torch.Tensor:
    t = torch.arange(n) / sr
    return 0.5 * torch.sin(2 * math.pi * (200 * t + 1500 * t ** 2))


# -- the mel filterbank --------------------------------------------------------------

def test_mel_filterbank_rows_are_unit_peak_triangles_in_mel_order():
    n_fft, n_mels = 512, 40
    fb = mel_filterbank(n_fft, n_mels, SR)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == torch.float32
    assert (fb >= 0).all()
    peaks = fb.max(dim=1)
    # Every filter spans several bins here, so its peak lands close to 1, never above.
    assert (peaks.values <= 1 + 1e-6).all() and (peaks.values > 0.5).all()
    assert (torch.diff(peaks.indices) >= 0).all() and peaks.indices[-1] > peaks.indices[0]
    # A triangle's area is half its base: the row sums, in bins, match it.
    mel = torch.linspace(0, 2595 * math.log10(1 + SR / 2 / 700), n_mels + 2, dtype=torch.float64)
    hz = 700 * (10 ** (mel / 2595) - 1)
    expected = (hz[2:] - hz[:-2]) / 2 / (SR / n_fft)
    np.testing.assert_allclose(fb.sum(dim=1).numpy(), expected.numpy(), rtol=0.15)
    # HTK scale: the centre of filter m is the (m + 1)-th mel point.
    centre_bins = (hz[1:-1] / (SR / n_fft)).round().long()
    assert (peaks.indices - centre_bins).abs().max() <= 1


def test_mel_filterbank_checks_its_band():
    with pytest.raises(ParameterError, match="f_max"):
        mel_filterbank(256, 32, SR, f_max=SR)
    with pytest.warns(UserWarning, match="all zero"):
        mel_filterbank(64, 64, SR)


# -- log-mel and masks ----------------------------------------------------------------

def test_log_mel_mask_and_shapes():
    lm = LogMel(SR, n_fft=256, hop_length=64, n_mels=32)
    wave = torch.zeros(2, 4000)
    wave[0] = tone(440, 4000)
    wave[1, :1000] = tone(1000, 1000)
    spec, mask = lm(AudioBatch(wave, torch.tensor([4000, 1000])))
    assert spec.shape == (2, 32, 1 + (4000 - 256) // 64) and spec.dtype == torch.float32
    assert mask.sum(dim=1).tolist() == [1 + (4000 - 256) // 64, 1 + (1000 - 256) // 64]
    assert (spec[1][:, ~mask[1]] == 0).all()
    # A 1 kHz tone puts its energy in the mel band around 1 kHz.
    peak_band = spec[1][:, mask[1]].mean(dim=1).argmax()
    centre_hz = 700 * (10 ** (torch.linspace(0, 2595 * math.log10(1 + 4000 / 700), 34)[1:-1]
                              / 2595) - 1)
    assert abs(float(centre_hz[peak_band]) - 1000) < 150


def test_padding_never_leaks_duration():
    """A clip's spectrogram and masked statistics are the same alone and batched beside
    a much longer clip, even with garbage (not zeros) beyond its length."""
    lm = LogMel(SR, n_fft=256, hop_length=100, n_mels=32)
    short = chirp(2345)
    alone_spec, alone_mask = lm(AudioBatch(short[None], torch.tensor([2345])))
    wave = torch.zeros(2, 40000)
    wave[0] = tone(300, 40000)
    wave[1, :2345] = short
    wave[1, 2345:] = torch.rand(40000 - 2345, generator=torch.Generator().manual_seed(0))
    spec, mask = lm(AudioBatch(wave, torch.tensor([40000, 2345])))
    n = int(alone_mask.sum())
    assert int(mask[1].sum()) == n and alone_mask.all()
    torch.testing.assert_close(spec[1, :, :n], alone_spec[0], rtol=1e-5, atol=1e-5)
    mean, std = masked_mean_std(spec, mask)
    alone_mean, alone_std = masked_mean_std(alone_spec, alone_mask)
    torch.testing.assert_close(mean[1], alone_mean[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std[1], alone_std[0], rtol=1e-5, atol=1e-5)
    normed = masked_instance_norm(spec, mask)
    torch.testing.assert_close(normed[1, :, :n], masked_instance_norm(alone_spec, alone_mask)[0],
                               rtol=1e-4, atol=1e-4)
    assert (normed[1, :, n:] == 0).all()


def test_masked_mean_std_matches_a_per_clip_reference():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 10, generator=gen)
    x[2, :, 6:] = float("nan")  # ignored: masked
    valid = torch.tensor([10, 3, 6])
    mask = torch.arange(10)[None] < valid[:, None]
    mean, std = masked_mean_std(x, mask, eps=0.0)
    for b in range(3):
        ref = x[b, :, : valid[b]].double().numpy()
        np.testing.assert_allclose(mean[b].numpy(), ref.mean(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std[b].numpy(), ref.std(axis=1), rtol=1e-5, atol=1e-6)


def test_log_mel_refuses_clips_shorter_than_a_frame():
    lm = LogMel(SR, n_fft=400)
    batch = AudioBatch(torch.zeros(3, 1000), torch.tensor([1000, 1000, 399]),
                       index=torch.tensor([7, 8, 42]))
    with pytest.raises(InputError, match=r"clip 42 has 399 samples.*n_fft=400"):
        lm(batch)


# -- back to waveforms ---------------------------------------------------------------------

def _stft_magnitude(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    return torch.stft(wave, n_fft, hop, window=torch.hann_window(n_fft), center=False,
                      return_complex=True).abs()


def test_griffin_lim_recovers_sine_and_chirp_magnitudes():
    n_fft, hop = 256, 64
    wave = torch.stack([tone(440, 8000), chirp(8000)])
    magnitude = _stft_magnitude(wave, n_fft, hop)

    def convergence(n_iter: int) -> torch.Tensor:
        out = griffin_lim(magnitude, n_fft=n_fft, hop_length=hop, n_iter=n_iter,
                          generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, n_fft + hop * (magnitude.shape[-1] - 1))
        return spectral_convergence(magnitude, out, n_fft=n_fft, hop_length=hop)

    random_phase, fitted = convergence(0), convergence(32)
    # Measured: random phase about 0.62-0.66, 32 fast Griffin-Lim iterations 0.08-0.09.
    assert (random_phase > 0.4).all()
    assert (fitted < 0.15).all() and (fitted < random_phase / 4).all()


def test_mel_to_linear_then_griffin_lim_keeps_the_log_mel():
    lm = LogMel(SR, n_fft=256, hop_length=64, n_mels=64)
    wave = torch.stack([chirp(6000), tone(700, 6000) + 0.3 * tone(2100, 6000)])
    lengths = torch.tensor([6000, 6000])
    spec, mask = lm(AudioBatch(wave, lengths))
    # Compared where the original has energy (within 60 dB of its peak per clip).
    loud = spec > spec.amax(dim=(1, 2), keepdim=True) - math.log(1e6)

    def error(n_iter: int) -> float:
        linear = mel_to_linear(spec.exp() - lm.eps, lm.filterbank, n_iter=n_iter)
        assert linear.shape == (2, 129, spec.shape[-1]) and (linear >= 0).all()
        out = griffin_lim(linear.sqrt(), n_fft=256, hop_length=64, n_iter=32, length=6000,
                          generator=torch.Generator().manual_seed(0))
        again, _ = lm(AudioBatch(out, lengths))
        return float((again - spec).abs()[loud].mean())

    noise, _ = lm(AudioBatch(0.1 * torch.randn(2, 6000, generator=torch.Generator().manual_seed(1)),
                             lengths))
    refined, pinv_only = error(100), error(0)
    # Measured: 0.77 nats refined, 2.47 with the clamped pseudo-inverse, 4.3 for noise.
    assert refined < 1.0, f"log-mel error {refined:.3f} nats"
    assert refined < pinv_only / 2
    assert refined < float((noise - spec).abs()[loud].mean()) / 4


# -- the input adapter ------------------------------------------------------------------------

def test_audio_source_pads_to_the_batch_longest_clip():
    clips = [np.full(n, 1000, np.int16) for n in (500, 3000, 800, 900)]
    source = audio_source(clips, sample_rate=SR)
    assert source.modality == "audio" and source.sample_shape == (3000,)
    first, second = source.batches(np.array([0, 2, 1, 3]), 2)
    assert first.wave.shape == (2, 800) and first.wave.dtype == torch.int16
    assert first.lengths.tolist() == [500, 800] and first.index.tolist() == [0, 2]
    assert (first.wave[0, :500] == 1000).all() and (first.wave[0, 500:] == 0).all()
    assert second.wave.shape == (2, 3000) and second.lengths.tolist() == [3000, 900]
    assert (second.wave[1, 900:] == 0).all()


def test_waveforms_lengths_slicing_and_zeroing():
    data = np.ones((4, 100), np.float32) * 0.5
    w = Waveforms(data, lengths=[100, 40, 250, 10], sample_rate=SR)
    assert w.lengths.tolist() == [100, 40, 100, 10] and len(w) == 4 and w.shape == (4, 100)
    sub = w[np.array([1, 3])]
    assert isinstance(sub, Waveforms) and sub.lengths.tolist() == [40, 10]
    assert w[1].shape == (40,) and isinstance(w[1:3], Waveforms)
    assert w[np.array([True, False, True, False])].lengths.tolist() == [100, 100]
    [batch] = audio_source(sub, sample_rate=SR).batches(np.arange(2), 8)
    assert batch.wave.shape == (2, 40) and (batch.wave[1, 10:] == 0).all()
    assert data[3, 20] == 0.5  # the caller's array is untouched


@pytest.mark.parametrize("X, match", [
    (np.zeros((0, 100), np.float32), "empty"),
    (np.zeros((3, 0), np.float32), "0 samples"),
    ([np.zeros(100, np.int16), np.zeros(0, np.int16)], "clip 1 of X has 0 samples"),
    (np.zeros((3, 2, 100), np.float32), r"\(n_samples, n_times\).*shape \(3, 2, 100\)"),
    ([np.zeros(100, np.float32), np.zeros((2, 100), np.float32)], "clip 1 of X has shape"),
    (np.zeros((3, 100), np.int32), "int32.*int16 PCM or float"),
    (np.zeros((3, 100), np.uint8), "uint8.*int16 PCM or float"),
    (np.full((3, 100), 300.0), r"\[-1, 1\].*32768"),
    (np.where(np.arange(300).reshape(3, 100) == 250, np.nan, 0.0), "NaN or infinity \\(row 2\\)"),
    ([np.zeros(10), np.array([0.0, np.inf])], "clip 1 of X contains NaN or infinity"),
    (Waveforms(np.zeros((3, 100), np.int16), sample_rate=16000), "16000 Hz.*8000 Hz"),
])
def test_audio_source_refuses_bad_input(X, match):
    with pytest.raises(InputError, match=match):
        audio_source(X, sample_rate=SR)


def test_waveforms_checks_its_arguments():
    with pytest.raises(InputError, match="n_samples, n_times"):
        Waveforms(np.zeros(10))
    with pytest.raises(InputError, match="3 integers"):
        Waveforms(np.zeros((3, 10)), lengths=[1, 2])
    with pytest.raises(InputError, match="sample_rate"):
        Waveforms(np.zeros((3, 10)), sample_rate=8000.5)


# -- end to end: a tiny audio method ----------------------------------------------------------

class AudioEncoder(nn.Module):
    """LogMel -> masked mean and std per band -> Linear."""

    def __init__(self, sample_rate: int, n_mels: int, dim: int):
        super().__init__()
        self.log_mel = LogMel(sample_rate, n_fft=256, hop_length=128, n_mels=n_mels)
        self.norm = nn.BatchNorm1d(2 * n_mels)
        self.linear = nn.Linear(2 * n_mels, dim)
        self.out_features = dim

    def forward(self, batch: AudioBatch) -> torch.Tensor:
        spec, mask = self.log_mel(batch)
        mean, std = masked_mean_std(spec, mask)
        return self.linear(self.norm(torch.cat([mean, std], dim=1)))


class AudioProbe(FeatureExtractor):
    """Test-only method: pooled log-mel statistics through a linear layer, trained to
    whiten its features (a trivial loss), for tables (an MLP) or audio."""

    name = "audio_probe"
    family = "test"
    modalities = ("tabular", "audio")
    _parameter_constraints = {**FeatureExtractor._parameter_constraints, **AUDIO_CONSTRAINTS,
                              "dim": [int]}

    def __init__(self, backbone="mlp", *, dim=8, modality="auto", sample_rate=16000,
                 backbone_kwargs=None, weights=None, part=None, max_epochs=2, batch_size=16,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="cpu", precision="auto", num_workers=0,
                 random_state=None, verbose=0, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    def build(self, spec):
        if spec.modality == "audio":
            return nn.ModuleDict({"backbone": AudioEncoder(self.sample_rate, 16, self.dim)})
        backbone = spec.make_backbone()
        return nn.ModuleDict({"backbone": backbone, "head": nn.Linear(spec.backbone_dim, self.dim)})

    def outputs(self, spec):
        return {"features": self.dim}

    def optimizers(self, modules):
        return {"main": OptimizerSpec(modules.parameters(), optimizer="adam", lr=1e-2,
                                      schedule="constant")}

    def _encode(self, modules, x):
        out = modules["backbone"](x)
        return modules["head"](out) if "head" in modules else out

    def training_step(self, modules, batch, ctx):
        z = self._encode(modules, batch.x)
        z = z - z.mean(dim=0)
        cov = z.T @ z / len(z)
        ctx.optimize("main", (cov - torch.eye(self.dim)).square().mean())

    def embed(self, modules, x):
        return {"features": self._encode(modules, x)}


@pytest.fixture(scope="module")
def fsdd():
    path = DATA / "fsdd.npz"
    if not path.exists():
        pytest.skip("the shared FSDD data is not available")
    with np.load(path) as d:
        rows = np.arange(0, 3000, 75)  # 40 clips: every speaker, every digit
        return d["x"][rows], np.minimum(d["length"][rows], 8000), d["speaker"][rows]


def probe(**params) -> AudioProbe:
    return AudioProbe(**{"sample_rate": SR, "random_state": 0, **params})


def test_fit_transform_on_int16_array_list_and_waveforms(fsdd):
    x, lengths, _ = fsdd
    est = probe(modality="audio").fit(x)
    spec = est.input_spec_
    assert (spec.modality, spec.sample_rate, spec.max_length, spec.dtype) == (
        "audio", SR, 8000, "int16")
    assert est.n_epochs_ == 2 and np.isfinite(est.history_["loss"]).all()
    features = est.transform(x)
    assert features.shape == (40, 8) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert not hasattr(est, "n_features_in_")

    clips = [row[:n] for row, n in zip(x, lengths)]
    waves = Waveforms(x, lengths=lengths, sample_rate=SR)
    from_list = probe().fit(clips)  # modality="auto" takes a list of 1-D arrays as audio
    assert from_list.input_spec_.max_length == lengths.max()
    a = from_list.transform(clips)
    b = from_list.transform(waves)
    # The same clips, padded differently: identical features (padding never leaks).
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_list.set_params(inference_batch_size=3).transform(clips), a,
                               rtol=1e-5, atol=1e-5)
    # Float input in [-1, 1] is the same audio as int16 / 32768.
    np.testing.assert_allclose(from_list.transform([c / 32768.0 for c in clips]), a,
                               rtol=1e-4, atol=1e-4)
    fitted_on_waves = probe().fit(waves)
    np.testing.assert_allclose(fitted_on_waves.transform(waves), a, rtol=1e-5, atol=1e-5)


def test_audio_errors_through_the_estimator(fsdd):
    x, lengths, _ = fsdd
    # A method without a tabular path says how to pass audio rows.
    no_tables = type("ImageAudioProbe", (AudioProbe,), {"modalities": ("image", "audio")})
    with pytest.raises(InputError, match="2-D table; pass modality='audio' if the rows are"):
        no_tables(sample_rate=SR).fit(x)
    est = probe(modality="audio").fit(x[:8])
    with pytest.raises(InputError, match="8000 Hz.*sample_rate is 16000"):
        probe(sample_rate=16000).fit(Waveforms(x, sample_rate=8000))
    with pytest.raises(InputError, match="22050 Hz.*8000 Hz"):
        est.transform(Waveforms(x, sample_rate=22050))
    with pytest.raises(InputError, match="NaN"):
        est.transform([np.array([0.0, np.nan] * 200)])
    with pytest.raises(InputError, match="clip 1 has 100 samples.*n_fft=256"):
        est.transform([x[0], x[1, :100]])
    with pytest.raises(ValueError, match="'modality' parameter"):
        probe(modality="video").fit(x)
    # Without modality="audio" a 2-D array stays a table (the MLP path).
    tabular = probe().fit(x[:, :64].astype(np.float32))
    assert tabular.input_spec_.modality == "tabular" and tabular.n_features_in_ == 64


def test_an_image_or_tabular_method_refuses_waveforms(fsdd):
    x, _, _ = fsdd
    est = featurekit.create("pretrained", backbone="mlp", device="cpu", verbose=0)
    with pytest.raises(InputError, match="audio .*Waveforms.*does not take"):
        est.fit(Waveforms(x))
    fitted = est.fit(x[:, :32].astype(np.float32) / 32768)
    with pytest.raises(InputError, match="fitted on tabular"):
        fitted.transform(Waveforms(x))


def test_clone_get_params_pickle_and_cross_validation(fsdd):
    x, lengths, speaker = fsdd
    est = probe(modality="audio", dim=4)
    assert clone(est).get_params() == est.get_params()
    assert est.get_params()["sample_rate"] == SR
    waves = Waveforms(x, lengths=lengths, sample_rate=SR)
    fitted = clone(est).fit(waves)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(waves), fitted.transform(waves))
    assert again.input_spec_ == fitted.input_spec_
    scores = cross_val_score(make_pipeline(clone(est), LogisticRegression(max_iter=200)),
                             waves, speaker, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()


class _ProbePlugin:
    @featurekit.hookimpl
    def featurekit_register_methods(self, registry):
        registry.add_method(AudioProbe)


def test_save_load_keeps_the_audio_spec(fsdd, tmp_path):
    x, lengths, _ = fsdd
    waves = Waveforms(x[:12], lengths=lengths[:12], sample_rate=SR)
    featurekit.registry.register_plugin(_ProbePlugin(), "audio-probe-test")
    try:
        est = probe(max_epochs=1).fit(waves)
        est.save(tmp_path / "probe.pt")
        again = featurekit.load(tmp_path / "probe.pt")
        assert again.input_spec_ == est.input_spec_
        assert again.input_spec_.min_length == int(lengths[:12].min())
        np.testing.assert_array_equal(again.transform(waves), est.transform(waves))
    finally:
        featurekit.registry.unregister_plugin("audio-probe-test")
        featurekit.registry.reload_plugins()
