"""ContentStyle and BetaVAE beyond the conformance kit (which tests/test_common.py runs
over every registered method): parts and their names, recombination, the groups= fit
argument (routing, bad values), AdaIN and the partner draw against
their definitions, the beta-VAE's per-dimension KL, and featurekit.evaluate.parts_table."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import featurekit
from featurekit.data import Waveforms
from featurekit.datasets import load_mnist
from featurekit.evaluate import parts_table
from featurekit.exceptions import InputError, ParameterError
from featurekit.testing import tiny_data
from featurekit_disentangling import BetaVAE, ContentStyle
from featurekit_disentangling.erasure import LinearEraser
from featurekit_disentangling.losses import same_group_partners
from featurekit_disentangling.networks import AdaINDecoder, adain

#: A ContentStyle as small as the kit's tiny models (content 4 x 2 x 2 = 16, style 4).
TINY = dict(backbone_kwargs={"width": 4}, content_channels=4, content_grid=2, style_dim=4,
            style_width=4, decoder_width=8, max_epochs=1, batch_size=32, device="cpu",
            random_state=0, verbose=0)


def tiny_cs(**params) -> ContentStyle:
    return ContentStyle(**{**TINY, **params})


@pytest.fixture(scope="module")
def mnist():
    """256 real MNIST digits (28 px, uint8), their labels, and two groups (even / odd rows)."""
    x, y = load_mnist()
    return x[:256], y[:256], np.arange(256) % 2


@pytest.fixture(scope="module")
def fitted(mnist):
    X, _, groups = mnist
    return tiny_cs().fit(X, groups=groups)


def test_the_family_and_its_backbone_are_registered():
    names = {m["name"] for m in featurekit.list_methods() if m["family"] == "disentangling"}
    assert names == {"content_style", "beta_vae"}
    assert [b["name"] for b in featurekit.list_backbones("content_enc*")] == ["content_encoder"]


# -- parts ---------------------------------------------------------------------------------

def test_parts_shapes_and_names(fitted, mnist):
    X = mnist[0][:20]
    assert fitted.feature_parts_ == {"content": slice(0, 16), "style": slice(16, 20)}
    both = fitted.transform(X)
    assert both.shape == (20, 20) and both.dtype == np.float32
    names = fitted.get_feature_names_out()
    assert names[0] == "content_style_content0" and names[16] == "content_style_style0"
    for part, cols in fitted.feature_parts_.items():
        fitted.set_params(part=part)
        np.testing.assert_array_equal(fitted.transform(X), both[:, cols])
        assert len(fitted.get_feature_names_out()) == cols.stop - cols.start
    fitted.set_params(part="both")
    np.testing.assert_array_equal(fitted.transform(X), both)
    fitted.set_params(part=None)


def test_the_content_part_has_its_stated_size_whatever_the_image_size():
    X8 = load_digits().images[:40].astype(np.float32) / 16
    X20 = np.kron(X8, np.ones((1, 3, 3)))[:, :20, :20]
    widths = [tiny_cs(content_grid=3).fit(X).transform(X).shape[1] for X in (X8, X20)]
    assert widths == [4 * 9 + 4, 4 * 9 + 4]


def test_a_misspelled_part_is_named_with_a_suggestion(fitted, mnist):
    with pytest.raises(ParameterError, match=r"Got 'contnet' instead\. Did you mean 'content'"):
        tiny_cs(part="contnet").fit(mnist[0][:40])
    fitted.set_params(part="stlye")
    try:
        with pytest.raises(ParameterError, match="Did you mean 'style'"):
            fitted.transform(mnist[0][:2])
    finally:
        fitted.set_params(part=None)


# -- recombine -----------------------------------------------------------------------------

def test_recombine_gives_images_like_the_content_input(fitted, mnist):
    X = mnist[0]
    out = fitted.recombine(content_of=X[:6], style_of=X[6:12])
    assert out.shape == (6, 28, 28) and out.dtype == np.uint8
    floats = fitted.recombine(content_of=X[:3].astype(np.float32) / 255, style_of=X[3:6])
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() <= 1
    one_style = fitted.recombine(content_of=X[:6], style_of=X[6:7])
    np.testing.assert_array_equal(one_style[2], fitted.recombine(content_of=X[2:3],
                                                                 style_of=X[6:7])[0])


def test_the_style_changes_the_output_and_content_alone_fixes_nothing_else(fitted, mnist):
    X = mnist[0].astype(np.float32) / 255
    own = fitted.recombine(content_of=X[:8], style_of=X[:8])
    swapped = fitted.recombine(content_of=X[:8], style_of=X[8:16])
    assert (np.abs(own - swapped).mean(axis=(1, 2)) > 0).all()
    # Each output depends on its own content and style only: batching and the other
    # rows change nothing.
    fitted.set_params(inference_batch_size=3)
    try:
        again = fitted.recombine(content_of=X[:8], style_of=X[8:16])
    finally:
        fitted.set_params(inference_batch_size=256)
    np.testing.assert_allclose(again, swapped, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        fitted.recombine(content_of=X[[0, 20]], style_of=X[[8, 30]])[0], swapped[0],
        rtol=0, atol=1e-6)


def test_recombine_refuses_mismatched_inputs(fitted, mnist):
    X = mnist[0]
    with pytest.raises(InputError, match="content_of has 4 samples and style_of 3"):
        fitted.recombine(content_of=X[:4], style_of=X[4:7])
    with pytest.raises(InputError, match=r"style_of: .*shape"):
        fitted.recombine(content_of=X[:2], style_of=np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(InputError, match=r"modality .*\(image\); content_of is image, "
                                         r"style_of is tabular"):
        fitted.recombine(content_of=X[:2], style_of=X[:2].reshape(2, -1))


# -- groups ---------------------------------------------------------------------------------

def test_groups_are_routed_in_a_pipeline_and_y_never_becomes_groups(mnist):
    X, y, groups = mnist[0][:64], mnist[1][:64], mnist[2][:64]
    with sklearn.config_context(enable_metadata_routing=True):
        est = tiny_cs().set_fit_request(groups=True)
        pipe = make_pipeline(est, LogisticRegression(max_iter=200))
        pipe.fit(X, y, groups=groups)
        assert pipe.predict(X).shape == (64,)
    assert pipe[0].group_values_.tolist() == [0, 1]
    direct = tiny_cs().fit(X, groups=groups)
    np.testing.assert_array_equal(pipe[0].transform(X), direct.transform(X))
    with_y = tiny_cs().fit(X, y)
    assert with_y.group_values_ is None and "critic" not in with_y.modules_
    np.testing.assert_array_equal(with_y.transform(X), tiny_cs().fit(X).transform(X))


def test_a_fit_with_groups_records_its_terms_and_keeps_no_training_groups(fitted, mnist):
    for key in ("loss_model", "loss_critic", "reconstruction", "swap", "style_classification",
                "confusion", "critic_accuracy"):
        assert len(fitted.history_[key]) == 1 and np.isfinite(fitted.history_[key][0]), key
    assert len(fitted.modules_["group_codes"].codes) == 0
    again = pickle.loads(pickle.dumps(fitted))
    assert "critic" in again.modules_
    np.testing.assert_array_equal(again.transform(mnist[0][:5]), fitted.transform(mnist[0][:5]))


@pytest.mark.parametrize("groups, message", [
    (np.zeros(40), r"one value \(np.float64\(0.0\)\)|one value \(0.0\)"),
    (np.arange(39) % 2, "X and groups have different lengths: n_samples=40, len"),
    (np.zeros((40, 2)), "1-D array"),
])
def test_bad_groups_are_named(groups, message, mnist):
    with pytest.raises(InputError, match=message) as info:
        tiny_cs().fit(mnist[0][:40], groups=groups)
    assert isinstance(info.value, ValueError)


def test_leace_equalizes_the_group_means_and_keeps_what_is_orthogonal():
    rng = np.random.default_rng(0)
    group, other = rng.integers(0, 3, 600), rng.integers(0, 2, 600)
    x = np.c_[(group == 1) + 0.3 * rng.normal(size=600), other + 0.3 * rng.normal(size=600),
              (group == 2) + 0.3 * rng.normal(size=600), rng.normal(size=(600, 3))]
    eraser = LinearEraser(6).fit(torch.tensor(x, dtype=torch.float32), torch.as_tensor(group), 3)
    erased = eraser(torch.tensor(x, dtype=torch.float32)).numpy()
    assert int(eraser.rank) == 2  # n_groups - 1 directions
    for g in range(3):
        np.testing.assert_allclose(erased[group == g].mean(0), erased.mean(0), atol=1e-4)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1, max_iter=2000))
    assert probe.fit(x, group).score(x, group) > 0.9
    assert len(np.unique(probe.fit(erased, group).predict(erased))) == 1  # a constant guess
    assert probe.fit(erased, other).score(erased, other) > 0.9  # the other factor stays
    assert np.abs(erased[:, 3:] - x[:, 3:]).mean() < 0.1  # unrelated columns barely move (std 1)
    assert np.linalg.matrix_rank(erased - x, tol=1e-4) == 2


def test_leace_erases_a_group_in_a_direction_of_small_variance():
    """A group carried by a column 1000x quieter than the others is erased too."""
    rng = np.random.default_rng(0)
    group = rng.integers(0, 2, 4000)
    x = np.c_[group + 0.01 * rng.normal(size=4000), 1000 * rng.normal(size=(4000, 127))]
    x = torch.tensor(x, dtype=torch.float32)
    erased = LinearEraser(128).fit(x, torch.as_tensor(group), 2)(x).numpy()
    gap = erased[group == 1, 0].mean() - erased[group == 0, 0].mean()
    assert abs(gap) < 1e-3  # 0.96 before


def test_the_eraser_computes_in_float32_under_bf16_autocast_and_loads_when_absent():
    rng = np.random.default_rng(1)
    group = rng.integers(0, 3, 900)
    x = torch.tensor(np.c_[group, rng.normal(size=(900, 7))] + rng.normal(size=(900, 8)),
                     dtype=torch.float32)
    eraser = LinearEraser(8).fit(x, torch.as_tensor(group), 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = eraser(x.to(torch.bfloat16))
    assert out.dtype == torch.float32
    means = np.stack([out[torch.as_tensor(group == g)].mean(0).numpy() for g in range(3)])
    assert np.abs(means - means.mean(0)).max() < 1e-2  # bf16 input rounding only
    fresh = LinearEraser(8)
    fresh.load_state_dict({})  # a model saved before the eraser existed: the identity
    assert torch.equal(fresh(x), x)


def test_the_content_part_is_linearly_erased_of_the_groups(mnist):
    X, _, groups = mnist
    est = tiny_cs(part="content").fit(X, groups=groups)
    content = est.transform(X)
    assert est.content_erasure_rank_ == 1
    np.testing.assert_allclose(content[groups == 0].mean(0), content[groups == 1].mean(0),
                               atol=1e-4)
    plain = tiny_cs(part="content", content_erasure=None).fit(X, groups=groups)
    assert plain.content_erasure_rank_ == 0
    assert np.abs(plain.transform(X)[groups == 0].mean(0)
                  - plain.transform(X)[groups == 1].mean(0)).max() > 1e-3
    moved = content - plain.transform(X)  # the same training run, then the eraser
    np.testing.assert_allclose(np.linalg.matrix_rank(moved - moved.mean(0), tol=1e-4), 1)
    np.testing.assert_array_equal(est.set_params(part="style").transform(X),
                                  plain.set_params(part="style").transform(X))
    unsupervised = tiny_cs().fit(X)
    assert unsupervised.content_erasure_rank_ == 0 and "content_eraser" not in unsupervised.modules_


def test_a_warm_start_refits_the_eraser_on_the_codes_as_trained(mnist):
    X, _, groups = mnist
    est = tiny_cs(part="content", warm_start=True).fit(X[:128], groups=groups[:128])
    est.fit(X[:128], groups=groups[:128])
    content = est.transform(X[:128])
    np.testing.assert_allclose(content[groups[:128] == 0].mean(0),
                               content[groups[:128] == 1].mean(0), atol=1e-4)


def test_warm_start_needs_the_same_groups(mnist):
    X, _, groups = mnist
    est = tiny_cs(warm_start=True).fit(X[:40], groups=groups[:40])
    with pytest.raises(ParameterError, match="warm_start=True continues"):
        est.fit(X[:40])
    est.fit(X[:40], groups=groups[:40])
    assert est.n_epochs_ == 2


@pytest.mark.parametrize("value", [1, 0, 2.5, "64"])
def test_a_bad_content_codebook_is_refused(value, mnist):
    with pytest.raises(InvalidParameterError, match="'content_codebook' parameter"):
        tiny_cs(content_codebook=value).fit(mnist[0][:40])


def test_a_content_codebook_quantizes_every_position_of_the_content_map(mnist):
    """With content_grid equal to the map's side the content part is the map itself: each
    position must be one of the codebook's vectors, and at most that many distinct ones."""
    X, _, groups = mnist
    est = tiny_cs(content_codebook=3, content_grid=7, content_erasure=None).fit(
        X[:64], groups=groups[:64])
    for key in ("vq_loss", "codebook_perplexity"):
        assert len(est.history_[key]) == 1 and np.isfinite(est.history_[key][0]), key
    assert 1.0 <= est.history_["codebook_perplexity"][0] <= 3.0
    content = est.set_params(part="content").transform(X[:20])            # (20, 4 * 7 * 7)
    vectors = content.reshape(20, 4, 49).transpose(0, 2, 1).reshape(-1, 4)
    codebook = est.modules_["quantizer"].codebook.detach().numpy()
    nearest = np.abs(vectors[:, None, :] - codebook[None]).max(axis=2).min(axis=1)
    assert nearest.max() < 1e-5
    assert len(np.unique(vectors.round(5), axis=0)) <= 3
    plain = tiny_cs(content_grid=7).fit(X[:64]).set_params(part="content").transform(X[:20])
    assert len(np.unique(plain.reshape(20, 4, 49).transpose(0, 2, 1).reshape(-1, 4).round(5),
                         axis=0)) > 100


# -- networks and losses ------------------------------------------------------------------------

def test_adain_sets_each_channels_mean_and_std():
    x = torch.randn(3, 5, 6, 7) * 4 + 2
    scale, shift = torch.rand(3, 5) + 0.5, torch.randn(3, 5)
    out = adain(x, scale, shift)
    torch.testing.assert_close(out.mean(dim=(2, 3)), shift, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), scale, atol=1e-3, rtol=0)


@pytest.mark.parametrize("map_size, shape", [((7, 7), (1, 28, 28)), ((4, 4), (3, 16, 16)),
                                             ((2, 3), (1, 8, 12)), ((2, 2), (1, 9, 9))])
def test_the_decoder_gives_the_working_size(map_size, shape):
    dec = AdaINDecoder(4, map_size, shape, style_dim=3, width=16)
    assert dec(torch.randn(2, 4, *map_size), torch.randn(2, 3)).shape == (2, *shape)


def test_partners_are_other_members_of_the_same_group():
    torch.manual_seed(0)
    groups = torch.randint(0, 5, (200,))
    partners = same_group_partners(groups)
    assert torch.equal(groups[partners], groups)
    assert bool((partners != torch.arange(200)).all())
    assert sorted(partners.tolist()) == list(range(200))  # a permutation: every style is used


def test_a_backbone_whose_map_is_one_pixel_is_refused():
    X, _ = tiny_data("image")
    with pytest.raises(ParameterError, match=r"1 x 1 map.*image_size="):
        tiny_cs(backbone="small_cnn").fit(X)


# -- beta-VAE --------------------------------------------------------------------------------------

def test_beta_vae_records_the_kl_of_each_dimension():
    X = load_digits().data
    vae = BetaVAE("mlp", n_components=3, max_epochs=2, batch_size=64, random_state=0,
                  verbose=0).fit(X)
    assert vae.beta == 4.0 and vae.family == "disentangling"
    per_dim = vae.kl_per_dimension()
    assert per_dim.shape == (2, 3) and (per_dim >= 0).all()
    assert [f"kl_dim{i}" in vae.history_ for i in range(3)] == [True] * 3
    np.testing.assert_allclose(per_dim.sum(axis=1), vae.history_["kl"], rtol=1e-4)


# -- parts_table ---------------------------------------------------------------------------------------

def test_parts_table_on_a_case_with_a_known_answer():
    rng = np.random.default_rng(0)
    n = 600
    a, b = rng.integers(0, 3, n), rng.integers(0, 2, n)
    knows_a = np.eye(3)[a] + 0.1 * rng.normal(size=(n, 3))
    knows_b = np.eye(2)[b] + 0.1 * rng.normal(size=(n, 2))
    noise = rng.normal(size=(n, 4))
    split = slice(0, 400), slice(400, n)
    table = parts_table({"a_part": (knows_a[split[0]], knows_a[split[1]]),
                         "b_part": (knows_b[split[0]], knows_b[split[1]])},
                        factors_train={"a": a[split[0]], "b": b[split[0]]},
                        factors_test={"a": a[split[1]], "b": b[split[1]]},
                        baselines={"noise": (noise[split[0]], noise[split[1]])})
    counts_a, counts_b = np.bincount(a[split[1]]), np.bincount(b[split[1]])
    assert table.chance == {"a": counts_a.max() / 200, "b": counts_b.max() / 200}
    assert table.accuracy("a_part", "a") == 1.0 and table.accuracy("b_part", "b") == 1.0
    for part, factor in (("a_part", "b"), ("b_part", "a"), ("noise", "a"), ("noise", "b")):
        assert table.accuracy(part, factor) < table.chance[factor] + 0.1
    text = str(table)
    assert "chance (majority class)" in text and "| a_part" in text and "noise" in text


def test_parts_table_reads_an_estimators_parts(fitted, mnist):
    X, y, groups = mnist
    fitted.set_params(part="style")
    table = parts_table(fitted, X[:128], X[128:], factors_train={"digit": y[:128]},
                        factors_test={"digit": y[128:]})
    assert fitted.part == "style"  # restored
    fitted.set_params(part=None)
    assert [row["features"] for row in table.rows] == ["content", "style"]
    assert [row["n_features"] for row in table.rows] == [16, 4]
    with pytest.raises(InputError, match="same factors"):
        parts_table(fitted, X, X, factors_train={"digit": y}, factors_test={"group": groups})


# -- audio ---------------------------------------------------------------------------------------

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR = 8000
#: A tiny audio ContentStyle (content 4 x 2 ** 2 = 16, style 4), on 40-band log-mels.
TINY_AUDIO = dict(TINY, backbone_kwargs={"width": 8}, sample_rate=SR, batch_size=16)


@pytest.fixture(scope="module")
def fsdd():
    """48 real spoken digits (int16 at 8 kHz; every speaker and digit), their valid lengths,
    digits and speakers."""
    path = DATA / "fsdd.npz"
    if not path.exists():
        pytest.skip("the shared FSDD data is not available")
    with np.load(path) as d:
        rows = np.arange(0, 3000, 62)[:48]
        return d["x"][rows], np.minimum(d["length"][rows], 8000), d["y"][rows], d["speaker"][rows]


@pytest.fixture(scope="module")
def audio_fitted(fsdd):
    x, lengths, _, speaker = fsdd
    return tiny_cs(**{**TINY_AUDIO, "max_epochs": 2}).fit(Waveforms(x, lengths=lengths, sample_rate=SR),
                                                   groups=speaker)


def test_audio_fit_parts_and_names(audio_fitted, fsdd):
    x, lengths, _, _ = fsdd
    est = audio_fitted
    assert est.input_spec_.modality == "audio" and est.input_spec_.sample_rate == SR
    assert est.feature_parts_ == {"content": slice(0, 16), "style": slice(16, 20)}
    assert est.modules_["front_end"].log_mel.n_mels == 40
    for key in ("reconstruction", "swap", "confusion", "critic_accuracy"):
        assert np.isfinite(est.history_[key]).all() and len(est.history_[key]) == 2, key
    waves = Waveforms(x[:10], lengths=lengths[:10], sample_rate=SR)
    both = est.transform(waves)
    assert both.shape == (10, 20) and both.dtype == np.float32 and np.isfinite(both).all()
    names = est.get_feature_names_out()
    assert names[0] == "content_style_content0" and names[16] == "content_style_style0"
    est.set_params(part="style")
    try:
        np.testing.assert_array_equal(est.transform(waves), both[:, 16:])
    finally:
        est.set_params(part=None)
    # The same clips as a list of 1-D arrays: the same features.
    clips = [row[:n] for row, n in zip(x[:10], lengths[:10])]
    np.testing.assert_allclose(est.transform(clips), both, rtol=1e-5, atol=1e-5)


def test_audio_padding_never_leaks_duration(audio_fitted, fsdd):
    """A clip's parts are the same alone as batched beside a much longer clip, even
    with garbage beyond its length in a Waveforms row."""
    x, lengths, _, _ = fsdd
    short = int(np.argmin(lengths))
    clip = x[short, :lengths[short]]
    alone = audio_fitted.transform([clip])
    longer = np.concatenate([x[0, :lengths[0]], x[1, :lengths[1]], x[2, :lengths[2]]])
    batched = audio_fitted.transform([longer, clip])
    np.testing.assert_allclose(batched[1], alone[0], rtol=1e-4, atol=1e-5)
    rows = np.zeros((2, len(longer)), np.int16)
    rows[0], rows[1, :len(clip)] = longer, clip
    rows[1, len(clip):] = np.random.default_rng(0).integers(-20000, 20000, len(longer) - len(clip))
    padded = audio_fitted.transform(Waveforms(rows, lengths=[len(longer), len(clip)],
                                              sample_rate=SR))
    np.testing.assert_allclose(padded[1], alone[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(padded[0], alone[0])


def test_audio_quantized_content_ignores_padding(fsdd):
    """With content_codebook, a clip's content is still the same alone and padded."""
    x, lengths, _, speaker = fsdd
    est = tiny_cs(**TINY_AUDIO, content_codebook=4).fit(
        Waveforms(x, lengths=lengths, sample_rate=SR), groups=speaker)
    assert "quantizer" in est.modules_ and np.isfinite(est.history_["vq_loss"]).all()
    short = int(np.argmin(lengths))
    clip = x[short, :lengths[short]]
    rows = np.zeros((2, lengths[0]), np.int16)
    rows[0], rows[1, :len(clip)] = x[0, :lengths[0]], clip
    rows[1, len(clip):] = 20000
    padded = est.transform(Waveforms(rows, lengths=[lengths[0], len(clip)], sample_rate=SR))
    np.testing.assert_allclose(padded[1], est.transform([clip])[0], rtol=1e-4, atol=1e-5)


def test_audio_recombine_gives_log_mels_and_waveforms(audio_fitted, fsdd):
    x, lengths, _, _ = fsdd
    waves = Waveforms(x[:4], lengths=lengths[:4], sample_rate=SR)
    mel = audio_fitted.recombine(content_of=waves, style_of=waves[[3, 2, 1, 0]])
    frames = 1 + (lengths[:4] - 256) // 64
    assert mel.shape == (4, 40, frames.max()) and mel.dtype == np.float32
    for i, n in enumerate(frames):
        assert np.isfinite(mel[i]).all() and (mel[i, :, n:] == 0).all()
        assert mel[i, :, :n].std() > 0
    own = audio_fitted.recombine(content_of=waves, style_of=waves)
    assert np.abs(own - mel).mean() > 0  # the style changes the output
    wave = audio_fitted.recombine(content_of=waves, style_of=waves[:1], output="waveform")
    assert wave.shape == x[:4].shape and wave.dtype == np.int16
    assert all((wave[i, n:] == 0).all() and np.abs(wave[i, :n]).max() > 0
               for i, n in enumerate(lengths[:4]))
    clips = [(row[:n] / 32768).astype(np.float32) for row, n in zip(x[:2], lengths[:2])]
    floats = audio_fitted.recombine(content_of=clips, style_of=clips[1:], output="waveform")
    assert [c.shape for c in floats] == [c.shape for c in clips]
    assert all(c.dtype == np.float32 and np.abs(c).max() <= 1 for c in floats)


def test_audio_bad_input_is_named(audio_fitted, fsdd, mnist):
    x, lengths, _, speaker = fsdd
    with pytest.raises(InputError, match=r"clip of 100 samples, fewer than one STFT frame "
                                         r"\(n_fft=256\)"):
        tiny_cs(**TINY_AUDIO).fit([x[0, :lengths[0]], x[1, :100], x[2, :lengths[2]]])
    with pytest.raises(InputError, match=r"clip 1 has 100 samples.*n_fft=256"):
        audio_fitted.transform([x[0, :lengths[0]], x[1, :100]])
    with pytest.raises(InputError, match="16000 Hz.*sample_rate is 8000"):
        tiny_cs(**TINY_AUDIO).fit(Waveforms(x, lengths=lengths, sample_rate=16000))
    with pytest.raises(InputError, match="22050 Hz.*8000 Hz"):
        audio_fitted.transform(Waveforms(x[:2], sample_rate=22050))
    with pytest.raises(ParameterError, match="Did you mean 'content'"):
        tiny_cs(**TINY_AUDIO, part="contnt").fit(Waveforms(x, lengths=lengths, sample_rate=SR))
    with pytest.raises(InputError, match=r"fitted on \(audio\); content_of is image, "
                                         r"style_of is audio"):
        audio_fitted.recombine(content_of=mnist[0][:2], style_of=Waveforms(x[:2], sample_rate=SR))
    with pytest.raises(ParameterError, match="Did you mean 'waveform'"):
        audio_fitted.recombine(content_of=Waveforms(x[:2]), style_of=Waveforms(x[:2]),
                               output="wavefrom")
    clips = [row[:n] for row, n in zip(x, lengths)]
    with pytest.raises(ParameterError, match="'hop_length' parameter.*at most n_fft=256"):
        tiny_cs(**TINY_AUDIO, hop_length=300).fit(clips)
    with pytest.raises(ValueError, match="'n_fft' parameter"):
        tiny_cs(**TINY_AUDIO, n_fft=1).fit(clips)
    with pytest.raises(ValueError, match="'hop_length' parameter"):
        tiny_cs(**TINY_AUDIO, hop_length=0).fit(clips)


def test_an_image_model_refuses_audio_in_recombine(fitted, fsdd, mnist):
    x = fsdd[0]
    with pytest.raises(InputError, match=r"fitted on \(image\); content_of is image, "
                                         r"style_of is audio"):
        fitted.recombine(content_of=mnist[0][:2], style_of=Waveforms(x[:2], sample_rate=SR))


def test_audio_clone_pickle_save_load(audio_fitted, fsdd, tmp_path):
    x, lengths, _, _ = fsdd
    params = audio_fitted.get_params()
    assert clone(audio_fitted).get_params() == params
    assert (params["n_mels"], params["n_fft"], params["hop_length"]) == (40, 256, 64)
    waves = Waveforms(x[:6], lengths=lengths[:6], sample_rate=SR)
    again = pickle.loads(pickle.dumps(audio_fitted))
    np.testing.assert_array_equal(again.transform(waves), audio_fitted.transform(waves))
    np.testing.assert_array_equal(again.recombine(content_of=waves, style_of=waves[:1]),
                                  audio_fitted.recombine(content_of=waves, style_of=waves[:1]))
    audio_fitted.save(tmp_path / "cs.pt")
    loaded = featurekit.load(tmp_path / "cs.pt")
    np.testing.assert_array_equal(loaded.transform(waves), audio_fitted.transform(waves))


def test_warm_start_checks_group_length_and_a_failed_fit_keeps_the_model():
    X, _ = tiny_data("image")
    X = X[:32]
    groups = np.tile(["a", "b"], 16)
    est = tiny_cs().fit(X, groups=groups)
    est.set_params(warm_start=True)
    with pytest.raises(InputError, match="different lengths"):
        est.fit(X, groups=groups[:16])
    with pytest.raises(InputError, match="different lengths"):
        est.fit(X[:16], groups=groups)
    assert list(est.group_values_) == ["a", "b"]
    est.fit(X, groups=groups)  # still continues
    assert len(est.history_["reconstruction"]) == 2
