"""BiGAN and CycleGAN: the conformance kit, CycleGAN's two-domain data (metadata
routing, y as domains, domains of different sizes and channels, bad input), the
image pool through save/load and resume, the cycle error in history_, the
`plot translations` command, and the losses against their formulas."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sklearn
import torch
from click.testing import CliRunner
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from torch import nn
from torch.nn import functional as F

import featurekit
from featurekit import hookimpl
from featurekit.exceptions import InputError, ParameterError
from featurekit.registry import register_plugin, unregister_plugin
from featurekit.testing import parametrize_method_checks, tiny, tiny_data
from featurekit_adversarial import BiGAN, CycleGAN
from featurekit_adversarial.domains import content_box, deskew, paste
from featurekit_adversarial.generators import cyclegan_encoder
from featurekit_adversarial.losses import adversarial_loss, discriminator_loss
from featurekit_adversarial.pool import ImagePool

#: A CycleGAN as small as the kit's tiny models, with the paper's generator layout.
SMALL = dict(backbone_kwargs={"width": 2, "n_blocks": 1}, discriminator_width=4, max_epochs=1,
             batch_size=8, device="cpu", random_state=0, verbose=0)


@parametrize_method_checks([BiGAN(), CycleGAN()])
def test_conformance(estimator, check):
    check(estimator)


def test_the_family_and_its_backbone_are_registered():
    names = {m["name"] for m in featurekit.list_methods() if m["family"] == "adversarial"}
    assert names == {"bigan", "cyclegan"}
    assert [b["name"] for b in featurekit.list_backbones("cyclegan_enc*")] == ["cyclegan_encoder"]


@pytest.fixture(scope="module")
def digits():
    """The kit's 48 digits as 8x8 uint8 images, labels, and two domains (even / odd)."""
    X, y = tiny_data("image")
    return X, y, y % 2


def two_sized_domains(n: int = 12, channels_first: bool = False):
    """``n`` grey 8x8 images (domain "grey") and ``n`` RGB 12x12 ones ("rgb"), as a list."""
    rng = np.random.default_rng(0)
    grey = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(n)]
    shape = (3, 12, 12) if channels_first else (12, 12, 3)
    rgb = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
    return grey, rgb, ["grey"] * n + ["rgb"] * n


# -- two domains in sklearn form --------------------------------------------------------

def test_domains_are_routed_in_a_pipeline_and_y_never_leaks(digits):
    X, y, domains = digits
    with sklearn.config_context(enable_metadata_routing=True):
        est = tiny(CycleGAN()).set_fit_request(domains=True)
        pipe = make_pipeline(est, LogisticRegression(max_iter=200))
        pipe.fit(X, y, domains=domains)  # y has 10 classes: it must not be read as domains
        assert pipe.predict(X).shape == (len(X),)
    assert pipe[0].metadata_values_["domains"].tolist() == [0, 1]
    direct = tiny(CycleGAN()).fit(X, domains=domains)
    np.testing.assert_array_equal(pipe[0].transform(X), direct.transform(X))


def test_y_with_two_values_is_read_as_the_domains(digits):
    X, _, domains = digits
    from_y = tiny(CycleGAN()).fit(X, domains)
    np.testing.assert_array_equal(from_y.transform(X),
                                  tiny(CycleGAN()).fit(X, domains=domains).transform(X))


def test_y_with_three_values_names_domains(digits):
    X, y, _ = digits
    with pytest.raises(InputError, match=r"domains=") as info:
        tiny(CycleGAN()).fit(X, y % 3)
    assert isinstance(info.value, ValueError) and "3 distinct values" in str(info.value)


@pytest.mark.parametrize("channels_first", [False, True])
def test_translate_gives_each_domain_its_own_size_and_channels(channels_first):
    grey, rgb, domains = two_sized_domains(channels_first=channels_first)
    gan = CycleGAN(image_size=8, **SMALL).fit(grey + rgb, domains=domains)
    rgb_shape = (3, 12, 12) if channels_first else (12, 12, 3)
    assert gan.domain_shapes_ == {"grey": (8, 8), "rgb": rgb_shape}
    assert gan.input_spec_.working_shape == (3, 8, 8)
    to_rgb = gan.translate(np.stack(grey[:5]), to="rgb")
    to_grey = gan.translate(np.stack(rgb[:4]), to="grey")
    assert to_rgb.shape == (5, *rgb_shape) and to_rgb.dtype == np.uint8
    assert to_grey.shape == (4, 8, 8) and to_grey.dtype == np.uint8
    floats = gan.translate(np.stack(grey[:2]).astype(np.float32) / 255, to="rgb")
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() <= 1
    assert gan.transform(np.stack(rgb[:3])).shape == (3, 2 * 8)  # parts A and B, 4k each
    with pytest.raises(InputError, match="domains are"):
        gan.translate(np.stack(grey[:2]), to="colour")


def test_parts_and_feature_names(digits):
    X, _, domains = digits
    gan = tiny(CycleGAN()).fit(X, domains=domains)
    width = gan.feature_parts_["A"].stop
    assert list(gan.feature_parts_) == ["A", "B"]
    names = gan.get_feature_names_out()
    assert names[0] == "cyclegan_A0" and names[width] == "cyclegan_B0"
    only_b = gan.set_params(part="B").transform(X)
    np.testing.assert_array_equal(only_b, gan.set_params(part=None).transform(X)[:, width:])


# -- bad input -----------------------------------------------------------------------------

def test_one_domain_is_an_error(digits):
    X, _, _ = digits
    with pytest.raises(InputError, match="one value"):
        tiny(CycleGAN()).fit(X, domains=np.zeros(len(X)))


def test_more_than_two_domains_is_an_error(digits):
    X, y, _ = digits
    with pytest.raises(InputError, match="exactly two domains.*3 values"):
        tiny(CycleGAN()).fit(X, domains=y % 3)


def test_a_domain_smaller_than_a_batch_is_an_error(digits):
    X, _, _ = digits
    domains = np.r_[np.zeros(40), np.ones(8)]
    with pytest.raises(InputError, match=r"domain 1\.0 has 7 training images.*batch_size=16"):
        tiny(CycleGAN()).fit(X, domains=domains)


def test_mixed_sizes_need_image_size():
    grey, rgb, domains = two_sized_domains()
    with pytest.raises(InputError, match=r"different sizes.*image_size="):
        CycleGAN(**SMALL).fit(grey + rgb, domains=domains)


def test_mixed_sizes_within_a_domain_are_an_error():
    grey, rgb, domains = two_sized_domains()
    grey[0] = np.zeros((9, 9), np.uint8)
    with pytest.raises(InputError, match="domain 'grey' have 2 different shapes"):
        CycleGAN(image_size=8, **SMALL).fit(grey + rgb, domains=domains)


def test_domains_of_the_wrong_length_and_no_domains(digits):
    X, _, domains = digits
    with pytest.raises(InputError, match="len\\(domains\\)=47"):
        tiny(CycleGAN()).fit(X, domains=domains[:-1])
    with pytest.raises(InputError, match="needs domains="):
        tiny(CycleGAN()).fit(X)


def test_a_backbone_without_a_feature_map_is_refused(digits):
    X, _, domains = digits

    class Flat(nn.Module):
        out_features = 4

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 4)

        def forward(self, x):
            return self.fc(x.flatten(1))

    with pytest.raises(ParameterError, match="cyclegan_encoder"):
        tiny(CycleGAN()).set_params(backbone=Flat, backbone_kwargs=None).fit(X, domains=domains)


# -- framing="content" -------------------------------------------------------------------------

def framed_domains(n: int = 24):
    """Domain "small": 12x12 images, content in rows/columns 2-9 on black; domain "full":
    8x8 images filled with content (as MNIST's box beside USPS's frame)."""
    rng = np.random.default_rng(0)
    small = np.zeros((n, 12, 12), np.uint8)
    small[:, 2:10, 2:10] = rng.integers(100, 256, (n, 8, 8))
    full = rng.integers(100, 256, (n, 8, 8), dtype=np.uint8)
    return small, full, ["small"] * n + ["full"] * n


def test_content_box_finds_the_square_and_the_background():
    x = torch.full((6, 1, 28, 28), 10, dtype=torch.uint8)
    x[:, :, 4:24, 6:20] = 250  # content 20 high, 14 wide: a 20 px square centred on it
    x[0] = 10  # an image without content is skipped
    assert content_box(x, 255.0) == ([4, 3, 20], [pytest.approx(10 / 255)])
    x[1:, :, :, :] = 10
    x[1:, :, 0:12, 0:4] = 250  # at the corner: the square stays inside the image
    assert content_box(x, 255.0)[0] == [0, 0, 12]
    assert content_box(torch.zeros(3, 1, 6, 9), 1.0)[0] == [0, 1, 6]  # no content: the centre


def test_paste_fills_each_channel_with_the_background_colour():
    blue = torch.zeros(4, 3, 10, 10, dtype=torch.uint8)
    blue[:, 2] = 255
    blue[:, :, 3:7, 3:7] = 128  # grey content on a blue background
    box, background = content_box(blue, 255.0)
    assert box == [3, 3, 4] and background == [0.0, 0.0, 1.0]
    fmt = {"box": box, "background": background, "shape": (3, 10, 10), "layout": "first"}
    out = paste(np.full((2, 3, 4, 4), 7, np.uint8), fmt, 255.0)
    assert out[:, :, 0, 0].tolist() == [[0, 0, 255]] * 2 and (out[:, :, 3:7, 3:7] == 7).all()
    last = paste(np.full((1, 4, 4, 3), 7, np.uint8), {**fmt, "shape": (10, 10, 3),
                                                      "layout": "last"}, 255.0)
    assert last[0, 0, 0].tolist() == [0, 0, 255]


def test_framing_content_crops_and_pastes_each_domain(tmp_path):
    small, full, domains = framed_domains()
    kw = dict(SMALL, image_size=8)
    gan = CycleGAN(framing="content", **kw).fit(list(small) + list(full), domains=domains)
    formats = dict(zip(gan.metadata_values_["domains"].tolist(), gan.domain_formats_))
    assert formats["small"]["box"] == [2, 2, 8] and formats["full"]["box"] == [0, 0, 8]
    assert formats["small"]["background"] == [0.0]
    to_small = gan.translate(full[:5], to="small")
    assert to_small.shape == (5, 12, 12) and to_small.dtype == np.uint8
    inside = np.zeros((12, 12), bool)
    inside[2:10, 2:10] = True
    assert (to_small[:, ~inside] == 0).all() and to_small[:, inside].any()  # pasted on black
    # the generator saw the crop: translating the crop's 8 px content gives the same
    assert gan.translate(small[:4], to="full").shape == (4, 8, 8)
    floats = gan.translate(full[:2].astype(np.float32) / 255, to="small")
    assert floats.dtype == np.float32 and floats.max() <= 1
    unframed = CycleGAN(**kw).fit(list(small) + list(full), domains=domains)
    assert "box" not in unframed.domain_formats_[0]
    assert unframed.translate(full[:5], to="small")[:, ~inside].any()  # the paper's: whole image
    gan.save(tmp_path / "framed.pt")
    np.testing.assert_array_equal(featurekit.load(tmp_path / "framed.pt").translate(
        full[:3], to="small"), gan.translate(full[:3], to="small"))


def test_framing_is_validated():
    small, full, domains = framed_domains()
    X = list(small) + list(full)
    with pytest.raises(ValueError, match="framing"):
        CycleGAN(framing="zoom", **SMALL).fit(X, domains=domains)
    same = np.concatenate([small, small])
    with pytest.raises(InputError, match="image_size="):
        CycleGAN(framing="content", **SMALL).fit(same, domains=domains)
    gan = CycleGAN(framing="content", image_size=8, **SMALL).fit(X, domains=domains)
    with pytest.raises(InputError, match=r"native shape \(1, 8, 8\)"):
        gan.translate(small[:2], to="small")  # 12 px images given as the other domain


def slanted_strokes(n: int, size: int = 12, background: int = 0, ink: int = 255):
    """``n`` one-pixel strokes, each leaning by its own slope (-0.6 .. 0.6), on ``background``."""
    x = np.full((n, size, size), background, np.uint8)
    for i, slope in enumerate(np.linspace(-0.6, 0.6, n)):
        for row in range(2, size - 2):
            x[i, row, int(round(size / 2 + slope * (row - size / 2)))] = ink
    return x


def ink_slope(x: np.ndarray, background: int = 0) -> np.ndarray:
    ink = np.abs(x.astype(np.float64) - background)
    ys, xs = np.mgrid[:x.shape[1], :x.shape[2]]
    mass = ink.sum((1, 2))
    cy, cx = (ink * ys).sum((1, 2)) / mass, (ink * xs).sum((1, 2)) / mass
    dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]
    return (ink * dy * dx).sum((1, 2)) / (ink * dy ** 2).sum((1, 2))


def test_deskew_makes_every_stroke_upright_and_keeps_dtype_and_background():
    x = slanted_strokes(7)
    assert np.abs(ink_slope(x)).max() > 0.5
    upright = deskew(torch.from_numpy(x)[:, None], 255.0, [0.0])[:, 0].numpy()
    assert upright.dtype == np.uint8 and np.abs(ink_slope(upright)).max() < 0.05
    # dark ink on white, as floats: the background is what enters the frame
    white = slanted_strokes(7, background=255, ink=0).astype(np.float32) / 255
    out = deskew(torch.from_numpy(white)[:, None], 1.0, [1.0])[:, 0].numpy()
    assert out.dtype == np.float32 and np.abs(ink_slope(out * 255, background=255)).max() < 0.05
    assert out[:, 0, :].min() > 0.99  # the rows without ink stay background
    blank = torch.zeros(2, 1, 6, 6)
    assert torch.equal(deskew(blank, 1.0, [0.0]), blank)  # no ink: unchanged


def test_deskew_runs_before_the_framing_and_in_translate(tmp_path):
    slanted = slanted_strokes(24, size=12)
    upright = np.zeros((24, 8, 8), np.uint8)
    upright[:, 1:7, 2:6] = 200
    X, domains = list(slanted) + list(upright), ["slanted"] * 24 + ["upright"] * 24
    gan = CycleGAN(framing="content", deskew=True, image_size=8, **SMALL).fit(X, domains=domains)
    assert [f["deskewed"] for f in gan.domain_formats_] == [True, True]
    plain = CycleGAN(framing="content", image_size=8, **SMALL).fit(X, domains=domains)
    assert [f["deskewed"] for f in plain.domain_formats_] == [False, False]
    # the same generators, fed the deskewed crop: translate deskews what it is given
    fmt = gan.domain_formats_[gan.metadata_values_["domains"].tolist().index("slanted")]
    straight = deskew(torch.from_numpy(slanted[:4])[:, None], 255.0, fmt["background"])
    out = gan.translate(slanted[:4], to="upright")
    assert out.shape == (4, 8, 8)
    # translate deskews its input: an input already upright translates the same
    np.testing.assert_allclose(out, gan.translate(straight[:, 0].numpy(), to="upright"), atol=2)
    assert np.abs(plain.translate(slanted[:4], to="upright").astype(int)
                  - plain.translate(straight[:, 0].numpy(), to="upright")).max() > 2
    gan.save(tmp_path / "deskew.pt")
    np.testing.assert_array_equal(featurekit.load(tmp_path / "deskew.pt").translate(
        slanted[:3], to="upright"), gan.translate(slanted[:3], to="upright"))
    with pytest.raises(ParameterError, match="deskew=True.*framing='content'"):
        CycleGAN(deskew=True, image_size=8, **SMALL).fit(X, domains=domains)


# -- state: the image pools, the cycle error ---------------------------------------------------

def test_image_pools_survive_pickle_and_save_load(digits, tmp_path):
    X, _, domains = digits
    gan = tiny(CycleGAN()).fit(X, domains=domains)
    pool = gan.modules_["pool_b"]
    assert 0 < int(pool.count) <= pool.size == 50
    gan.save(tmp_path / "cyclegan.pt")
    for again in (featurekit.load(tmp_path / "cyclegan.pt"), pickle.loads(pickle.dumps(gan))):
        for key in ("pool_a", "pool_b"):
            assert torch.equal(again.modules_[key].images, gan.modules_[key].images)
            assert int(again.modules_[key].count) == int(gan.modules_[key].count)
        assert again.domain_shapes_ == {0: (8, 8), 1: (8, 8)}
        np.testing.assert_array_equal(again.translate(X[:3], to=1), gan.translate(X[:3], to=1))


class _StopAfterFirstEpoch:
    @hookimpl
    def featurekit_on_epoch_end(self, estimator, epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt


def test_image_pools_are_restored_on_resume(digits, tmp_path):
    X, _, domains = digits
    whole = tiny(CycleGAN()).fit(X, domains=domains)
    register_plugin(_StopAfterFirstEpoch(), "test-adversarial-stop")
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny(CycleGAN()).set_params(checkpoint_dir=tmp_path).fit(X, domains=domains)
    finally:
        unregister_plugin("test-adversarial-stop")
    saved = torch.load(next(tmp_path.rglob("checkpoint.pt")), weights_only=True)
    assert int(saved["modules"]["pool_b.count"]) > 0
    resumed = tiny(CycleGAN()).set_params(checkpoint_dir=tmp_path).fit(X, domains=domains)
    for key in ("pool_a", "pool_b"):
        assert torch.equal(resumed.modules_[key].images, whole.modules_[key].images)
    assert resumed.history_["cycle_error_a"] == whole.history_["cycle_error_a"]


def test_cycle_error_is_recorded_per_epoch_on_held_out_images(digits):
    X, _, domains = digits
    gan = tiny(CycleGAN()).fit(X, domains=domains)
    assert gan.n_samples_fit_ == len(X) - 2  # one image of each domain held out
    for key in ("cycle_error_a", "cycle_error_b"):
        assert len(gan.history_[key]) == gan.n_epochs_ == 2
        assert all(0 < e < 1 for e in gan.history_[key])
    assert len(gan.modules_["validation"].a) == 0  # not kept after fit
    none = tiny(CycleGAN()).set_params(validation_fraction=0.0).fit(X, domains=domains)
    assert "cycle_error_a" not in none.history_ and none.n_samples_fit_ == len(X)


# -- BiGAN options --------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{"loss": "lsgan"}, {"spectral_norm": True}])
def test_bigan_options(digits, params):
    X, _, _ = digits
    gan = tiny(BiGAN()).set_params(n_components=6, **params).fit(X)
    assert gan.transform(X).shape == (len(X), 6)
    assert all(np.isfinite(gan.history_[k]).all()
               for k in ("loss_discriminator", "loss_generator"))
    normed = [m for m in gan.modules_["discriminator"].modules() if hasattr(m, "parametrizations")]
    assert bool(normed) == params.get("spectral_norm", False)
    assert gan.sample(4, random_state=1).shape == (4, 8, 8)


def test_bigan_inverse_transform_decodes_codes(digits):
    X, _, _ = digits
    gan = tiny(BiGAN()).set_params(n_components=6).fit(X)
    out = gan.inverse_transform(gan.transform(X[:5]))
    assert out.shape == (5, 8, 8) and out.dtype == np.uint8


# -- the plot command --------------------------------------------------------------------------

def test_plot_translations_writes_a_png(tmp_path):
    from featurekit.cli import get_cli

    grey, rgb, domains = two_sized_domains()
    gan = CycleGAN(image_size=8, **SMALL).fit(grey + rgb, domains=domains)
    gan.save(tmp_path / "model.pt")
    for name, images in (("grey", grey[:3]), ("rgb", rgb[:3])):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(tmp_path / "data" / name / f"{i}.png")
    out = tmp_path / "grid.png"
    runner = CliRunner()
    result = runner.invoke(get_cli(), ["plot", "translations", str(tmp_path / "model.pt"),
                                       str(tmp_path / "data"), "-o", str(out), "-n", "2"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 50
    np.savez(tmp_path / "grey.npz", x=np.stack(grey))
    unlabeled = runner.invoke(get_cli(), ["plot", "translations", str(tmp_path / "model.pt"),
                                          str(tmp_path / "grey.npz"), "-o", str(out)])
    assert unlabeled.exit_code == 2 and "--domain" in unlabeled.output
    by_option = runner.invoke(get_cli(), ["plot", "translations", str(tmp_path / "model.pt"),
                                          str(tmp_path / "grey.npz"), "-o", str(out),
                                          "--domain", "grey"])
    assert by_option.exit_code == 0, by_option.output


def test_cli_fit_reads_data_labels_as_the_domains(tmp_path):
    from featurekit.cli import get_cli

    grey, _, _ = two_sized_domains()
    X = np.stack(grey * 2)
    np.savez(tmp_path / "two.npz", x=X, y=np.repeat([0, 1], len(grey)))
    np.savez(tmp_path / "none.npz", x=X)
    params = [item for k, v in SMALL.items() if k not in ("max_epochs", "random_state",
                                                          "verbose", "device", "batch_size")
              for item in ("--param", f"{k}={v!r}")]
    common = ["--max-epochs", "1", "--random-state", "0", "--device", "cpu", "--quiet",
              "--batch-size", str(SMALL.get("batch_size", 4)), *params]
    runner = CliRunner()
    result = runner.invoke(get_cli(), ["fit", "cyclegan", str(tmp_path / "two.npz"),
                                       "-o", str(tmp_path / "m.pt"), *common])
    assert result.exit_code == 0, result.output
    assert featurekit.load(tmp_path / "m.pt").domain_shapes_ == {0: (8, 8), 1: (8, 8)}
    result = runner.invoke(get_cli(), ["fit", "cyclegan", str(tmp_path / "none.npz"),
                                       "-o", str(tmp_path / "n.pt"), *common])
    assert result.exit_code == 2 and "domains= labels" in result.output


# -- pieces against their formulas --------------------------------------------------------------

def test_losses_match_their_formulas():
    logits = torch.tensor([-2.0, 0.0, 0.5, 3.0])
    sig = torch.sigmoid(logits)
    torch.testing.assert_close(adversarial_loss(logits, True, "nonsaturating"),
                               -torch.log(sig).mean())
    torch.testing.assert_close(adversarial_loss(logits, False, "nonsaturating"),
                               -torch.log(1 - sig).mean())
    torch.testing.assert_close(adversarial_loss(logits, True, "lsgan"), ((logits - 1) ** 2).mean())
    torch.testing.assert_close(discriminator_loss(logits, -logits, "lsgan"),
                               0.5 * (((logits - 1) ** 2).mean() + (logits ** 2).mean()))


def test_image_pool_fills_then_swaps_half():
    torch.manual_seed(0)
    pool = ImagePool(4, (1, 2, 2))
    first = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and int(pool.count) == 3
    new = torch.arange(10.0, 1010.0).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    out = pool.query(new)
    assert int(pool.count) == 4 and torch.equal(out[0], new[0])  # the last free slot
    from_pool = (out[1:] != new[1:]).flatten(1).all(1).float().mean()
    assert 0.4 < float(from_pool) < 0.6  # each image swapped with probability 1/2
    assert torch.equal(ImagePool(0, (1, 2, 2)).query(first), first)


def test_cyclegan_encoder_follows_the_paper():
    enc = cyclegan_encoder(in_channels=3, input_size=128, width=8)
    assert sum(isinstance(m, nn.Module) and type(m).__name__ == "ResidualBlock"
               for m in enc.modules()) == 6
    assert sum(type(m).__name__ == "ResidualBlock"
               for m in cyclegan_encoder(input_size=256, width=2).modules()) == 9
    x = torch.randn(2, 3, 32, 32)
    assert enc.features(x).shape == (2, 32, 8, 8) and enc(x).shape == (2, enc.out_features)
    with pytest.raises(ParameterError, match="no pretrained weights"):
        cyclegan_encoder(weights="IMAGENET1K_V1")
    with pytest.raises(ParameterError, match="n_blocks"):
        cyclegan_encoder(n_blocks=-1)


def test_generators_output_images_in_model_space(digits):
    """translate's images come from tanh outputs mapped through the fitted normalization."""
    X, _, domains = digits
    gan = tiny(CycleGAN()).fit(X, domains=domains)
    m = gan.modules_
    x = torch.zeros(1, 1, 8, 8)
    pixels01 = (m["pixels"](torch.ones(1, 1, 1, 1)) * m["pixels"].std + m["pixels"].mean)
    torch.testing.assert_close(pixels01, torch.ones(1, 1, 1, 1))
    torch.testing.assert_close(m["pixels"].inverse(m["pixels"](x)), x)
    assert F.l1_loss(m["pixels"].inverse(m["pixels"](x)), x) == 0
