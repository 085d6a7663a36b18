"""Tests of the batched augmentations in featurekit.data.augment."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from featurekit.data import augment
from featurekit.data.augment import (
    ColorJitter,
    Compose,
    FeatureCorruption,
    GaussianBlur,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomSolarize,
    image_recipe,
)

IMAGE_OPS = [
    RandomResizedCrop(12),
    RandomHorizontalFlip(),
    ColorJitter(),
    RandomGrayscale(),
    GaussianBlur(5),
    RandomSolarize(p=0.5),
    image_recipe(12, blur=True, solarize_p=0.2),
]
OP_IDS = [type(op).__name__ for op in IMAGE_OPS[:-1]] + ["image_recipe"]


def images(n: int = 16, channels: int = 3, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("op", IMAGE_OPS, ids=OP_IDS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_range(op, channels, dtype):
    x = images(channels=channels).to(dtype)
    out = op(x, gen())
    side = 12 if isinstance(op, (RandomResizedCrop, Compose)) else 16
    assert out.shape == (16, channels, side, side)
    assert out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("op", IMAGE_OPS, ids=OP_IDS)
def test_same_seed_same_output(op):
    x = images()
    assert torch.equal(op(x, gen(3)), op(x, gen(3)))
    assert not torch.equal(op(x, gen(3)), op(x, gen(4)))
    # A checkpointed generator state replays the same views.
    generator = gen(5)
    state = generator.get_state()
    first = op(x, generator)
    generator.set_state(state)
    assert torch.equal(op(x, generator), first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_data_device():
    x = images().cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    out = image_recipe(12, blur=True, solarize_p=0.2)(x, generator)
    assert out.device == x.device and out.shape == (16, 3, 12, 12)
    assert out.min() >= 0 and out.max() <= 1
    table = torch.randn(8, 4, device="cuda")
    assert FeatureCorruption()(table, generator).device == table.device
    with pytest.raises(ValueError, match="torch.Generator"):
        RandomHorizontalFlip()(x, gen())


@pytest.mark.parametrize(
    "op",
    [RandomResizedCrop(16), ColorJitter(p=1.0), GaussianBlur(5, p=1.0), image_recipe(16)],
    ids=["crop", "jitter", "blur", "recipe"],
)
def test_randomness_is_per_sample(op):
    x = images(n=1).expand(8, -1, -1, -1).contiguous()
    out = op(x, gen())
    flat = out.flatten(1)
    distinct = {tuple(row.tolist()) for row in flat}
    assert len(distinct) == 8


@pytest.mark.parametrize(
    "op",
    [
        RandomHorizontalFlip(p=0.0),
        ColorJitter(p=0.0),
        RandomGrayscale(p=0.0),
        GaussianBlur(5, p=0.0),
        RandomSolarize(p=0.0),
    ],
    ids=lambda op: type(op).__name__,
)
def test_probability_zero_is_identity(op):
    x = images()
    assert torch.equal(op(x, gen()), x)


def test_flip_matches_torch_flip():
    x = images(n=64)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x, gen()), torch.flip(x, dims=[-1]))
    out = RandomHorizontalFlip(p=0.5)(x, gen())
    flipped = torch.tensor([torch.equal(o, torch.flip(i, [-1])) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert torch.all(flipped ^ kept)
    assert 10 < flipped.sum() < 54


def test_full_crop_at_same_size_is_identity():
    x = images()
    out = RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, gen())
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_crop_boxes_follow_scale_and_stay_inside():
    # On a horizontal ramp (value = position / side), the first and last
    # output columns sample the box's outermost pixel centres, so they read
    # back the box width; with ratio 1 its area fraction must lie in scale.
    side = 64
    ramp = torch.arange(side, dtype=torch.float32).add(0.5).div(side)
    x = ramp.expand(256, 1, side, side).contiguous()
    out = RandomResizedCrop(side, scale=(0.25, 0.5), ratio=(1.0, 1.0))(x, gen())
    box_width = (out[:, 0, 0, -1] - out[:, 0, 0, 0]) * side + 1
    area_fraction = box_width**2 / side**2
    assert area_fraction.min() >= 0.25 - 1e-4 and area_fraction.max() <= 0.5 + 1e-4
    assert area_fraction.max() - area_fraction.min() > 0.15


def test_resized_crop_matches_torchvision():
    x = images(n=3, side=20)
    top, left = torch.tensor([0.0, 3.0, 5.0]), torch.tensor([0.0, 2.0, 8.0])
    height, width = torch.tensor([10.0, 12.0, 15.0]), torch.tensor([10.0, 9.0, 12.0])
    out = augment._resized_crop(x, top, left, height, width, (24, 24))
    for i in range(3):
        box = [int(v[i]) for v in (top, left, height, width)]
        expected = TF.resized_crop(x[i], *box, [24, 24], antialias=False)
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


def test_color_adjustments_match_torchvision():
    x = images(n=4)
    brightness = torch.tensor([0.6, 1.0, 1.4, 1.2])
    contrast = torch.tensor([1.3, 0.6, 1.0, 0.8])
    saturation = torch.tensor([0.7, 1.4, 1.2, 0.0])
    hue = torch.tensor([0.1, -0.1, 0.5, -0.37])
    out = augment._adjust_colors(x, brightness, contrast, saturation, hue)
    for i in range(4):
        expected = TF.adjust_brightness(x[i], float(brightness[i]))
        expected = TF.adjust_contrast(expected, float(contrast[i]))
        expected = TF.adjust_saturation(expected, float(saturation[i]))
        expected = TF.adjust_hue(expected, float(hue[i]))
        # torchvision weighs red 0.2989 in its luma, we weigh it 0.299 (ITU-R 601).
        torch.testing.assert_close(out[i], expected, atol=3e-4, rtol=0)


def test_hue_shift_handles_greys_and_ties():
    pixels = [[0.5, 0.5, 0.5], [0.8, 0.8, 0.2], [0.1, 0.9, 0.9], [0.7, 0.3, 0.7], [0.0, 0.0, 0.0]]
    x = torch.tensor(pixels).view(5, 3, 1, 1)
    shift = torch.tensor([0.3, 0.25, -0.4, 0.5, 0.1])
    out = augment._shift_hue(x, shift)
    expected = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(5)])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_grayscale_gives_equal_channels():
    x = images()
    out = RandomGrayscale(p=1.0)(x, gen())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    # torchvision weighs red 0.2989, we weigh it 0.299 (ITU-R 601).
    expected = TF.rgb_to_grayscale(x, num_output_channels=3)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_one_channel_images_go_through_the_full_recipe():
    x = images(channels=1, side=32)
    out = image_recipe(24, blur=True, solarize_p=0.5)(x, gen())
    assert out.shape == (16, 1, 24, 24)
    assert out.min() >= 0 and out.max() <= 1


def test_blur_removes_high_frequencies_and_keeps_constants():
    checker = (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)) % 2
    x = checker.float().expand(8, 3, 16, 16).contiguous()
    blurred = GaussianBlur(5, sigma=(1.0, 2.0), p=1.0)(x, gen())

    def high_frequency_energy(t: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft2(t - t.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
        return spectrum[..., 4:, 4:].sum()

    assert high_frequency_energy(blurred) < 0.05 * high_frequency_energy(x)
    constant = torch.full((4, 3, 16, 16), 0.3)
    torch.testing.assert_close(GaussianBlur(7, p=1.0)(constant, gen()), constant)


def test_solarize_inverts_above_threshold():
    x = images()
    out = RandomSolarize(threshold=0.5, p=1.0)(x, gen())
    torch.testing.assert_close(out, torch.where(x >= 0.5, 1 - x, x))


def test_feature_corruption_replaces_rate_of_entries_from_same_column():
    x = torch.randn(512, 20, generator=gen(1))
    out = FeatureCorruption(rate=0.6)(x, gen())
    assert out.shape == x.shape
    changed = out != x
    assert 0.55 < changed.float().mean() < 0.65
    for j in range(x.shape[1]):
        assert torch.isin(out[changed[:, j], j], x[:, j]).all()
    noisy = FeatureCorruption(rate=0.0, noise_std=0.1)(x, gen())
    assert 0.08 < (noisy - x).std() < 0.12
    assert torch.equal(FeatureCorruption(rate=0.0)(x, gen()), x)


def test_compose_applies_in_order_and_reprs():
    recipe = image_recipe(8, blur=True)
    assert [type(op).__name__ for op in recipe.ops] == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ColorJitter",
        "RandomGrayscale",
        "GaussianBlur",
    ]
    assert "ColorJitter(brightness=0.4" in repr(recipe)
    calls = []
    Compose([lambda x, g: calls.append(1) or x + 1, lambda x, g: calls.append(2) or x * 2])(
        torch.zeros(1), gen()
    )
    assert calls == [1, 2]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RandomResizedCrop(32, scale=(2, 1)), "scale"),
        (lambda: RandomResizedCrop(32, ratio=(0, 1)), "ratio"),
        (lambda: RandomResizedCrop(0), "size"),
        (lambda: RandomHorizontalFlip(p=1.5), "'p'"),
        (lambda: ColorJitter(brightness=-0.1), "brightness"),
        (lambda: ColorJitter(hue=0.6), "hue"),
        (lambda: RandomGrayscale(p=-0.1), "'p'"),
        (lambda: GaussianBlur(4), "kernel_size"),
        (lambda: GaussianBlur(3, sigma=(2.0, 1.0)), "sigma"),
        (lambda: RandomSolarize(threshold=2.0), "threshold"),
        (lambda: Compose([1, 2]), "ops"),
        (lambda: FeatureCorruption(rate=1.2), "rate"),
        (lambda: FeatureCorruption(noise_std=-1.0), "noise_std"),
        (lambda: image_recipe(32, strength=-1.0), "strength"),
    ],
)
def test_invalid_parameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        RandomHorizontalFlip()(torch.rand(3, 8, 8), gen())
    with pytest.raises(ValueError, match="channels"):
        ColorJitter()(torch.rand(2, 4, 8, 8), gen())
    with pytest.raises(ValueError, match="reflect padding"):
        GaussianBlur(9)(torch.rand(2, 3, 4, 4), gen())
    with pytest.raises(ValueError, match="at least 2 rows"):
        FeatureCorruption()(torch.randn(1, 5), gen())
