"""AutoEncoder, DenoisingAutoEncoder, VAE and MAE beyond fit/transform: the conformance
kit, decoding in the input's convention, save/load, bad input, the losses against the
papers' formulas, the plot commands, and a small quality check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.datasets import load_digits
from torch.distributions import Bernoulli, Normal, kl_divergence

import featurekit
from featurekit.cli import get_cli
from featurekit.preprocess import InputSpec, Preprocessor
from featurekit_reconstructive import MAE, VAE, AutoEncoder, DenoisingAutoEncoder
from featurekit_reconstructive.corruption import Corruption
from featurekit_reconstructive.decoders import ConvDecoder, upsampling_sizes
from featurekit_reconstructive.losses import (
    bernoulli_nll,
    gaussian_nll,
    kl_standard_normal,
    masked_patch_loss,
)
from featurekit_reconstructive.patches import (
    encode_tokens,
    patch_tokens,
    patchify,
    random_masking,
    unpatchify,
)

#: A one-block, 16-d ViT and decoder: MAE as small as the kit's other tiny models.
TINY_VIT = MAE.tiny_params["image"]
FAST = dict(max_epochs=2, batch_size=16, device="cpu", random_state=0, verbose=0)


def small(cls, **params):
    """A tiny, seeded CPU model of ``cls`` (MAE with a tiny ViT, the others a small_cnn)."""
    base = TINY_VIT if cls is MAE else {"backbone_kwargs": {"width": 4}}
    return cls(**{**base, **FAST, **params})


def test_list_methods_lists_the_family():
    names = {m["name"] for m in featurekit.list_methods() if m["family"] == "reconstructive"}
    assert names == {"autoencoder", "denoising_autoencoder", "vae", "mae"}


# -- decoding in the input's convention -------------------------------------------------

@pytest.fixture(scope="module")
def digits8():
    """sklearn's digits as (n, 8, 8) uint8 images, and their labels."""
    X, y = load_digits(return_X_y=True)
    return (X.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8), y


def _conventions(images):
    """The same grey images as users give them: uint8 (N, H, W); float (N, H, W, 1) in
    [0, 1]; float (N, 1, H, W) in [0, 255] with scale=255; flattened uint8 rows."""
    n = len(images)
    return [
        (images, {}),
        (images[..., None].astype(np.float32) / 255, {}),
        (images[:, None].astype(np.float64), {"scale": 255}),
        (images.reshape(n, -1), {"image_shape": (8, 8)}),
    ]


@pytest.mark.parametrize("cls", [AutoEncoder, VAE])
@pytest.mark.parametrize("case", range(4))
def test_inverse_transform_gives_inputs_as_they_were_given(cls, case, digits8):
    X, params = _conventions(digits8[0][:64])[case]
    top = 255 if X.dtype == np.uint8 or "scale" in params else 1
    est = small(cls, **params).fit(X)
    for out in (est.inverse_transform(est.transform(X)), est.reconstruct(X)):
        assert out.shape == X.shape
        assert out.dtype == (np.uint8 if X.dtype == np.uint8 else np.float32)
        assert 0 <= out.min() <= out.max() <= top


def test_reconstruct_follows_the_convention_of_its_input(digits8):
    X = digits8[0][:64]
    est = small(AutoEncoder).fit(X)
    as_uint8 = est.reconstruct(X)
    as_float = est.reconstruct(X[..., None] / np.float32(255))
    assert as_float.shape == (64, 8, 8, 1) and as_float.dtype == np.float32
    np.testing.assert_allclose(as_float[..., 0] * 255, as_uint8, atol=1.0)


def test_transform_takes_float_images_for_a_model_fitted_on_uint8(digits8):
    X = digits8[0][:48]
    est = small(AutoEncoder).fit(X)
    np.testing.assert_array_equal(est.transform(X / np.float32(255)), est.transform(X))


def test_tabular_rows_come_back_in_original_units():
    X = load_digits().data[:200] * 1000 + 5000  # far from standardized
    est = AutoEncoder("mlp", backbone_kwargs={"hidden": (32,)}, **FAST).fit(X)
    back = est.inverse_transform(est.transform(X))
    assert back.shape == X.shape and back.dtype == np.float32
    assert abs(back.mean() - X.mean()) < 0.2 * X.std()


def test_rgb_images_keep_their_layout():
    X = np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)
    est = small(AutoEncoder).fit(X)
    out = est.inverse_transform(est.transform(X))
    assert out.shape == X.shape and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1


@pytest.mark.parametrize(("raw", "layout", "flat", "sample_shape", "working_shape"), [
    (np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5), "none", False, (1, 5, 5), (1, 5, 5)),
    (np.linspace(0, 1, 2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3), "last", False,
     (3, 4, 4), (3, 4, 4)),
    (np.arange(2 * 36, dtype=np.uint8).reshape(2, 36), "none", True, (1, 6, 6), (1, 6, 6)),
    (np.full((2, 1, 4, 4), 77, dtype=np.uint8), "first", False, (1, 4, 4), (3, 8, 8)),
])
def test_preprocessor_inverse_undoes_preprocessing(raw, layout, flat, sample_shape,
                                                   working_shape):
    c = working_shape[0]
    spec = InputSpec("image", sample_shape, 255.0 if raw.dtype == np.uint8 else 1.0,
                     working_shape, (0.4,) * c, (0.2,) * c, layout=layout, flat=flat,
                     dtype="uint8" if raw.dtype == np.uint8 else "float32")
    prep = Preprocessor(spec, torch.device("cpu"))
    nchw = torch.from_numpy(raw.reshape(len(raw), *sample_shape) if layout != "last"
                            else np.moveaxis(raw, -1, 1).copy())
    back = prep.inverse(prep(nchw)).numpy()
    assert back.shape == raw.shape and back.dtype == raw.dtype
    if working_shape[1:] == sample_shape[1:]:
        np.testing.assert_allclose(back, raw, atol=1e-6 if raw.dtype != np.uint8 else 0)
    else:  # a constant image, resized and repeated to RGB and back
        np.testing.assert_array_equal(back, raw)


def test_preprocessor_inverse_unstandardizes_rows():
    spec = InputSpec("tabular", (3,), 1.0, (3,), (1.0, 2.0, 3.0), (10.0, 10.0, 10.0))
    prep = Preprocessor(spec, torch.device("cpu"))
    rows = torch.tensor([[5.0, -4.0, 100.0]])
    torch.testing.assert_close(prep.inverse(prep(rows)), rows)


def test_decoding_runs_in_batches_and_leaves_the_global_rng_alone(digits8):
    X = digits8[0][:40]
    est = small(VAE).fit(X)
    Z = est.transform(X)
    whole = est.inverse_transform(Z)
    state = torch.get_rng_state()
    by_7 = est.set_params(inference_batch_size=7).inverse_transform(Z)
    np.testing.assert_array_equal(whole, by_7)
    est.sample(5, random_state=1)
    assert torch.equal(torch.get_rng_state(), state)


# -- save / load ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [AutoEncoder, DenoisingAutoEncoder, VAE, MAE])
def test_save_load_reproduces_reconstructions(cls, digits8, tmp_path):
    X = digits8[0][:48]
    est = small(cls).fit(X)
    est.save(tmp_path / "model.pt")
    again = featurekit.load(tmp_path / "model.pt")
    kw = {"random_state": 3} if cls is MAE else {}
    np.testing.assert_array_equal(again.reconstruct(X, **kw), est.reconstruct(X, **kw))
    if cls is VAE:
        np.testing.assert_array_equal(again.sample(6, random_state=0),
                                      est.sample(6, random_state=0))
    if cls is not MAE:
        Z = est.transform(X)
        np.testing.assert_array_equal(again.inverse_transform(Z), est.inverse_transform(Z))


# -- bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [AutoEncoder, DenoisingAutoEncoder, VAE])
def test_inverse_transform_with_the_wrong_number_of_components(cls, digits8):
    est = small(cls, n_components=6).fit(digits8[0][:32])
    with pytest.raises(ValueError, match=r"X has 5 columns, .*inverse_transform expects 6"):
        est.inverse_transform(np.zeros((2, 5)))


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.2])
def test_mask_ratio_outside_0_1(ratio, digits8):
    X = digits8[0][:32]
    with pytest.raises(ValueError, match=r"'mask_ratio' parameter of MAE must be a float in "
                                         r"the range \(0.0, 1.0\)"):
        small(MAE, mask_ratio=ratio).fit(X)
    est = small(MAE).fit(X)
    with pytest.raises(ValueError, match=rf"mask_ratio must be a float in \(0, 1\).*"
                                         rf"Got {ratio!r}"):
        est.reconstruct(X, mask_ratio=ratio)


def test_image_sizes_not_divisible_by_the_patch_size():
    X = np.random.default_rng(0).integers(0, 256, (16, 30, 30), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"4x4 px patches, and 30x30 px images do not divide "
                                         r"into them; pass image_size= a multiple of 4 \(such "
                                         r"as 28 or 32\).*dividing 30 \(2, 3, 5, 6, 10, 15\)"):
        small(MAE).fit(X)
    assert small(MAE, image_size=28).fit(X).reconstruct(X).shape == (16, 28, 28)


def test_mae_needs_square_images_and_a_vit():
    X = np.random.default_rng(0).integers(0, 256, (16, 20, 24), dtype=np.uint8)
    with pytest.raises(ValueError, match="MAE needs square images, and they are 20x24 px"):
        small(MAE).fit(X)
    with pytest.raises(ValueError, match="Vision Transformer, and backbone 'small_cnn' built "
                                         "a SmallCNN; use backbone='vit_tiny'"):
        small(MAE, backbone="small_cnn", backbone_kwargs=None).fit(X[:, :20, :20])


def test_other_bad_parameters(digits8):
    X = digits8[0][:32]
    with pytest.raises(ValueError, match="'likelihood' parameter of VAE must be 'gaussian'"):
        VAE("mlp", likelihood="bernoulli", **FAST).fit(X.reshape(32, -1).astype(float))
    with pytest.raises(ValueError, match="n_samples must be an int >= 1. Got 0"):
        small(VAE).fit(X).sample(0)
    with pytest.raises(ValueError, match="'decoder_dim' parameter of MAE must be a multiple "
                                         "of 4"):
        small(MAE, decoder_dim=18).fit(X)
    with pytest.raises(ValueError, match="'hidden_dim' parameter of backbone 'vit_tiny' must "
                                         "be a multiple of num_heads=2"):
        small(MAE, backbone_kwargs={"hidden_dim": 15, "num_heads": 2}).fit(X)


# -- VAE ------------------------------------------------------------------------------

def test_vae_samples_are_shaped_like_inputs_and_seeded(digits8):
    est = small(VAE).fit(digits8[0][:48])
    a = est.sample(7, random_state=0)
    assert a.shape == (7, 8, 8) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, est.sample(7, random_state=0))
    assert not np.array_equal(a, est.sample(7, random_state=1))


def test_vae_records_the_elbo_terms(digits8):
    est = small(VAE, beta=4.0, max_epochs=3).fit(digits8[0][:48])
    history = est.history_
    assert len(history["reconstruction"]) == len(history["kl"]) == 3
    np.testing.assert_allclose(history["loss"],
                               np.add(history["reconstruction"], np.multiply(4.0, history["kl"])),
                               rtol=1e-5)
    assert min(history["kl"]) > 0


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_likelihoods_on_images(likelihood, digits8):
    X = digits8[0][:48]
    est = small(VAE, likelihood=likelihood).fit(X)
    assert ("pixels" in est.modules_) == (likelihood == "bernoulli")
    assert est.reconstruct(X).shape == X.shape


# -- the losses against the papers' formulas --------------------------------------------

def test_losses_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, target = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    torch.testing.assert_close(gaussian_nll(mean, target),
                               -Normal(mean, 1.0).log_prob(target).sum(dim=1))
    logits, pixels = torch.randn(4, 6, generator=g), torch.rand(4, 6, generator=g).round()
    torch.testing.assert_close(bernoulli_nll(logits, pixels),
                               -Bernoulli(logits=logits).log_prob(pixels).sum(dim=1))
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), reference)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_masked_patch_loss_is_the_mean_over_masked_patches(norm_pix):
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 12, generator=g), torch.randn(2, 5, 12, generator=g)
    mask = torch.tensor([[True, False, True, False, False], [False, False, False, True, True]])
    errors = []
    for i, j in mask.nonzero().tolist():
        t = target[i, j]
        if norm_pix:
            t = (t - t.mean()) / (t.var() + 1e-6).sqrt()
        errors.append(((pred[i, j] - t) ** 2).mean())
    torch.testing.assert_close(masked_patch_loss(pred, target, mask, norm_pix),
                               torch.stack(errors).mean())


# -- parts ----------------------------------------------------------------------------

def test_patches_round_trip_and_order():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = patchify(x, 2)
    assert patches.shape == (2, 6, 12)
    # the second patch is rows 0-1, columns 2-3, channel last within each pixel
    torch.testing.assert_close(patches[0, 1], x[0, :, 0:2, 2:4].permute(1, 2, 0).reshape(-1))
    torch.testing.assert_close(unpatchify(patches, 2, (3, 4, 6)), x)


def test_random_masking_keeps_a_share_of_each_sample():
    keep, mask = random_masking(3, 49, 0.75, torch.device("cpu"))
    assert keep.shape == (3, 12) and mask.sum(dim=1).tolist() == [37, 37, 37]
    assert not mask.gather(1, keep).any()
    _, mask = random_masking(2, 4, 0.99, torch.device("cpu"))
    assert mask.sum(dim=1).tolist() == [3, 3]  # at least one patch stays visible


def test_the_vit_run_on_all_patches_is_torchvisions_forward():
    vit = featurekit.registry.get_registry().backbone("vit_tiny").factory(
        in_channels=1, input_size=8, small_stem=True, weights=None, num_layers=2,
        num_heads=2, hidden_dim=16, mlp_dim=32).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(encode_tokens(vit, patch_tokens(vit, x))[:, 0], vit(x))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (3, 32, 20), (1, 3, 3)])
def test_conv_decoder_gives_the_working_size(shape):
    assert ConvDecoder(5, shape, width=16)(torch.randn(2, 5)).shape == (2, *shape)
    assert upsampling_sizes(*shape[1:])[-1] == shape[1:]


def test_corruption_masks_and_adds_noise_per_sample():
    x = torch.ones(64, 1, 16, 16)
    masked = Corruption(0.0, 0.25)(x, torch.Generator().manual_seed(0))
    assert abs(float((masked == 0).float().mean()) - 0.25) < 0.02
    noisy = Corruption(0.1, 0.0)(x, torch.Generator().manual_seed(0))
    assert abs(float((noisy - x).std()) - 0.1) < 0.01
    again = Corruption(0.1, 0.0)(x, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


# -- the plot commands ------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny AE, VAE and MAE models saved to files, and DATA as an .npz of digits."""
    folder = tmp_path_factory.mktemp("plot")
    X = (load_digits().images[:48] * 16).clip(0, 255).astype(np.uint8)
    np.savez(folder / "digits.npz", x=X)
    paths = {}
    for cls in (AutoEncoder, VAE, MAE):
        paths[cls.name] = folder / f"{cls.name}.pt"
        small(cls).fit(X).save(paths[cls.name])
    tabular = folder / "tabular.pt"
    AutoEncoder("mlp", **FAST).fit(X.reshape(48, -1).astype(float)).save(tabular)
    paths["tabular"] = tabular
    return folder / "digits.npz", paths


def _invoke(args):
    result = CliRunner().invoke(get_cli(), [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    return result


@pytest.mark.parametrize(("command", "model", "options", "rows"), [
    ("reconstructions", "autoencoder", [], 2), ("reconstructions", "mae", [], 3),
    ("samples", "vae", [], 4), ("samples", "vae", ["-n", 5, "--columns", 2], 3),
    ("traversal", "vae", [], 5),
    ("traversal", "autoencoder", ["--components", 3, "--in-order"], 3),
])
def test_plot_commands_write_pngs(command, model, options, rows, models, tmp_path):
    from PIL import Image

    data, paths = models
    out = tmp_path / f"{command}.png"
    args = ["plot", command, paths[model]] + ([] if command == "samples" else [data])
    result = _invoke(args + options + ["-o", out])
    assert result.exit_code == 0, result.output
    assert f"grid -> {out}" in result.output
    with Image.open(out) as img:  # the grid is about as tall as its rows (1.1 in + titles)
        assert abs(img.height / 100 - rows * 1.15) < 0.6


def test_plot_commands_refuse_models_without_the_verb(models, tmp_path):
    data, paths = models
    result = _invoke(["plot", "samples", paths["autoencoder"], "-o", tmp_path / "s.png"])
    assert result.exit_code == 2
    assert "autoencoder model, which has no `sample`" in result.output and "vae" in result.output
    result = _invoke(["plot", "traversal", paths["mae"], data, "-o", tmp_path / "t.png"])
    assert result.exit_code == 2 and "no `inverse_transform`" in result.output
    result = _invoke(["plot", "reconstructions", paths["tabular"], data, "-o", tmp_path / "r.png"])
    assert result.exit_code == 2
    assert "draws images, and MODEL was fitted on tabular" in result.output


# -- quality --------------------------------------------------------------------------

def test_autoencoder_beats_the_mean_image_on_digits(digits8):
    X, _ = digits8
    train, test = X[:1400], X[1400:]
    est = AutoEncoder(n_components=16, backbone_kwargs={"width": 8}, max_epochs=8,
                      batch_size=64, device="cpu", random_state=0, verbose=0).fit(train)
    rebuilt = est.reconstruct(test).astype(float)
    mse = np.mean((rebuilt - test) ** 2)
    mean_image = np.mean((train.mean(axis=0) - test) ** 2)
    assert mse < 0.5 * mean_image, (mse, mean_image)
