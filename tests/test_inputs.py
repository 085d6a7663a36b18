"""Input adapters, exercised through the public estimator API.

Most tests use ``Pretrained`` (nothing is trained, so a fit costs one forward
pass); ``Supervised`` and ``SimCLR`` appear where training matters. Images are
real: MNIST (grey, 28 px) and CIFAR-10 (RGB, 32 px) from ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import featurekit
from featurekit.data.inputs import LazyArraySource, image_source
from featurekit.exceptions import InputError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = {"backbone": "small_cnn", "backbone_kwargs": {"width": 4}, "max_epochs": 1,
        "batch_size": 16, "verbose": 0, "device": "cpu", "random_state": 0}

pytestmark = pytest.mark.skipif(not (DATA / "mnist_test.npz").exists(),
                                reason="the shared test data is not available")


def pretrained(**params):
    return featurekit.create("pretrained", **{**TINY, **params})


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA / "mnist_test.npz") as d:
        return d["x"][:24], d["y"][:24]


@pytest.fixture(scope="module")
def cifar() -> tuple[np.ndarray, np.ndarray]:
    # Stored grouped by class: a stride picks every class.
    with np.load(DATA / "cifar10_test.npz") as d:
        return d["x"][::400][:24], d["y"][::400][:24]


@pytest.fixture(scope="module")
def mnist_features(mnist) -> np.ndarray:
    """Features of the in-memory MNIST array: the reference other inputs must match."""
    X, _ = mnist
    return pretrained().fit(X).transform(X)


@pytest.fixture(scope="module")
def fitted_on_mnist(mnist):
    return pretrained().fit(mnist[0])


def write_pngs(folder: Path, images) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


# -- layouts --------------------------------------------------------------------

def test_grey_nhw_images(mnist, mnist_features):
    X, _ = mnist
    est = pretrained().fit(X)
    assert est.input_spec_.sample_shape == (1, 28, 28)
    assert mnist_features.shape == (24, 32) and mnist_features.dtype == np.float32
    assert np.isfinite(mnist_features).all()


def test_nhwc_nchw_and_torch_layouts_give_the_same_features(cifar):
    X, _ = cifar
    est = pretrained().fit(X)
    assert est.input_spec_.sample_shape == (3, 32, 32)
    expected = est.transform(X)
    nchw = X.transpose(0, 3, 1, 2)
    for same_images in (nchw, torch.from_numpy(X), torch.from_numpy(np.ascontiguousarray(nchw))):
        np.testing.assert_array_equal(est.transform(same_images), expected)
    np.testing.assert_array_equal(pretrained().fit(nchw).transform(nchw), expected)
    np.testing.assert_array_equal(
        pretrained(channels="first").fit(nchw).transform(nchw), expected)
    np.testing.assert_array_equal(pretrained(channels="last").fit(X).transform(X), expected)


def test_ambiguous_layout_asks_for_channels():
    X = np.zeros((4, 3, 8, 3), np.uint8)
    with pytest.raises(InputError, match="channels="):
        pretrained().fit(X)


@pytest.mark.parametrize("channels, sample_shape", [("first", (3, 8, 3)), ("last", (3, 3, 8))])
def test_explicit_channels_settle_the_ambiguity(channels, sample_shape):
    X = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="upsampled"):  # 3 px sides are below small_cnn's 8
        est = pretrained(channels=channels).fit(X)
    assert est.input_spec_.sample_shape == sample_shape
    assert est.transform(X).shape == (4, 32)


def test_explicit_channels_on_the_wrong_axis_is_refused(cifar):
    with pytest.raises(InputError, match="1 or 3 channels"):
        pretrained(channels="first").fit(cifar[0])


@pytest.mark.parametrize("shape, channels", [
    ((4, 8, 8, 4), "auto"), ((4, 4, 8, 8), "auto"), ((4, 8, 8, 4), "last"),
    ((4, 4, 8, 8), "first")])
def test_four_channel_images_are_refused(shape, channels):
    with pytest.raises(InputError, match="1 or 3 channels"):
        pretrained(channels=channels).fit(np.zeros(shape, np.uint8))


# -- value ranges -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_images_in_unit_range_match_uint8(mnist, mnist_features, dtype):
    X = mnist[0].astype(dtype) / 255
    np.testing.assert_allclose(pretrained().fit(X).transform(X), mnist_features,
                               rtol=1e-5, atol=1e-6)


def test_float_images_in_0_255_need_scale(mnist, mnist_features):
    X = mnist[0].astype(np.float64)
    with pytest.raises(InputError, match=r"scale="):
        pretrained().fit(X)
    est = pretrained(scale=255.0).fit(X)
    assert est.input_spec_.scale == 255.0
    np.testing.assert_allclose(est.transform(X), mnist_features, rtol=1e-5, atol=1e-6)


def test_int16_images_need_scale(mnist):
    with pytest.raises(InputError, match=r"int16.*scale="):
        pretrained().fit(mnist[0].astype(np.int16))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_non_finite_images_are_refused(mnist, bad, as_tensor):
    X = mnist[0].astype(np.float32) / 255
    X[3, 10, 10] = bad
    X = torch.from_numpy(X) if as_tensor else X
    with pytest.raises(ValueError, match="NaN"):
        pretrained().fit(X)


# -- sample counts ------------------------------------------------------------------

@pytest.mark.parametrize("X", [np.zeros((0, 28, 28), np.uint8), []], ids=["array", "list"])
def test_empty_input_is_refused(X):
    with pytest.raises(ValueError, match="empty"):
        pretrained().fit(X)


@pytest.mark.parametrize("as_list", [False, True])
def test_one_sample_is_refused(mnist, as_list):
    X = mnist[0][:1]
    with pytest.raises(ValueError, match="n_samples=1"):
        pretrained().fit(list(X) if as_list else X)


def test_y_of_another_length_names_both_lengths(mnist):
    X, y = mnist
    with pytest.raises(ValueError, match=r"n_samples=24.*len\(y\)=10"):
        featurekit.create("supervised", **TINY).fit(X, y[:10])


# -- tabular or flattened images ---------------------------------------------------------

def test_2d_input_is_tabular(mnist):
    rows = mnist[0].reshape(24, -1).astype(np.float32)
    est = pretrained(backbone="mlp", backbone_kwargs={"hidden": (16,)}).fit(rows)
    assert est.input_spec_.modality == "tabular" and est.n_features_in_ == 784
    assert est.transform(rows).shape == (24, 16)


def test_image_shape_reads_rows_as_images(mnist, mnist_features):
    rows = mnist[0].reshape(24, -1)
    est = pretrained(image_shape=(28, 28)).fit(rows)
    assert est.input_spec_.sample_shape == (1, 28, 28) and est.n_features_in_ == 784
    np.testing.assert_array_equal(est.transform(rows), mnist_features)


def test_image_backbone_on_a_table_suggests_the_fix(mnist):
    rows = mnist[0].reshape(24, -1)
    with pytest.raises(ValueError, match=r"mlp.*image_shape"):
        pretrained().fit(rows)


# -- lists of arrays ----------------------------------------------------------------------

def test_list_of_equal_size_arrays(mnist, mnist_features):
    images = list(mnist[0])
    np.testing.assert_array_equal(pretrained().fit(images).transform(images), mnist_features)


def test_list_of_different_sizes_needs_image_size(mnist):
    X = mnist[0]
    images = [X[0], X[1, :20, :24], X[2], X[3, 2:, 4:]]
    with pytest.raises(InputError, match="image_size="):
        pretrained().fit(images)
    est = pretrained(image_size=16).fit(images)
    assert est.input_spec_.sample_shape == (1, 16, 16)
    assert est.transform(images).shape == (4, 32)


def test_list_of_different_sizes_scales_each_image_by_its_own_range(mnist):
    X = mnist[0]
    uint8_only = [X[0], X[1, :20, :24]]
    mixed = [X[0], X[1, :20, :24] / 255.0]
    try:
        got = next(image_source(mixed, image_size=16).batches(np.arange(2), 2))
    except InputError:
        return  # refusing to mix value ranges would be fine too
    want = next(image_source(uint8_only, image_size=16).batches(np.arange(2), 2))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


# -- image files --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_pngs(mnist, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mnist_pngs")
    write_pngs(folder, mnist[0])
    return folder


def test_files_and_folder_decode_to_the_array(mnist_pngs, fitted_on_mnist, mnist_features):
    paths = sorted(mnist_pngs.glob("*.png"))
    for X in (paths, [str(p) for p in paths], mnist_pngs, str(mnist_pngs)):
        np.testing.assert_array_equal(fitted_on_mnist.transform(X), mnist_features)


def test_files_decode_in_worker_processes(mnist_pngs, fitted_on_mnist, mnist_features):
    # Workers start with forkserver/spawn (never fork), so each opens the files itself.
    est = fitted_on_mnist.set_params(num_workers=2)
    try:
        np.testing.assert_array_equal(est.transform(mnist_pngs), mnist_features)
    finally:
        est.set_params(num_workers=0)


def test_fit_on_files_and_folder(mnist_pngs):
    paths = sorted(mnist_pngs.glob("*.png"))
    for X in (paths, mnist_pngs):
        est = pretrained().fit(X)
        assert est.input_spec_.sample_shape == (1, 28, 28) and est.input_spec_.scale == 255.0
        assert est.transform(X).shape == (24, 32)


def test_rgb_files_decode_to_the_array(cifar, tmp_path):
    X, _ = cifar
    paths = write_pngs(tmp_path, X[:6])
    est = pretrained().fit(X[:6])
    np.testing.assert_array_equal(est.transform(paths), est.transform(X[:6]))


class ImageDataset(torch.utils.data.Dataset):
    """(image tensor, label) pairs, as a torchvision-style data set returns them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]), int(self.labels[i])


@pytest.mark.parametrize("kind", ["paths", "folder", "dataset"])
def test_fit_on_files_or_dataset_matches_fit_on_the_array(mnist, mnist_pngs, mnist_features,
                                                          kind):
    X = {"paths": sorted(mnist_pngs.glob("*.png")), "folder": mnist_pngs,
         "dataset": ImageDataset(*mnist)}[kind]
    np.testing.assert_array_equal(pretrained().fit(X).transform(X), mnist_features)


def test_unreadable_file_is_named(mnist_pngs, tmp_path):
    paths = sorted(mnist_pngs.glob("*.png"))[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    for files in ([broken, *paths], [*paths, broken]):
        with pytest.raises(InputError, match="broken.png"):
            pretrained().fit(files)


def test_files_of_different_sizes_need_image_size(mnist, tmp_path):
    X = mnist[0]
    paths = write_pngs(tmp_path, [X[0], X[1, :20, :24], X[2], X[3, 4:, :]])
    with pytest.raises(InputError, match="image_size="):
        pretrained().fit(paths)
    est = pretrained(image_size=16).fit(paths)
    assert est.input_spec_.sample_shape == (1, 16, 16)
    assert est.transform(paths).shape == (4, 32)


# -- torch Dataset and h5py ------------------------------------------------------------------

def test_torch_dataset_of_image_label_pairs(mnist, fitted_on_mnist, mnist_features):
    ds = ImageDataset(*mnist)
    est = pretrained().fit(ds)
    assert est.input_spec_.sample_shape == (1, 28, 28) and est.input_spec_.scale == 255.0
    assert est.transform(ds).shape == (24, 32)
    np.testing.assert_array_equal(fitted_on_mnist.transform(ds), mnist_features)


def test_h5py_dataset_is_read_lazily(mnist, mnist_features, tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f.create_dataset("x", data=mnist[0], chunks=(8, 28, 28))
    with h5py.File(tmp_path / "images.h5", "r") as f:
        ds = f["x"]
        source = image_source(ds)
        assert isinstance(source, LazyArraySource) and source.data is ds
        np.testing.assert_array_equal(pretrained().fit(ds).transform(ds), mnist_features)


def test_h5py_non_finite_values_past_the_probe_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    X = np.random.default_rng(0).random((300, 8, 8), dtype=np.float32)
    X[290, 1, 1] = np.nan  # after the first 256 images, which set the scale
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f.create_dataset("x", data=X)
    with h5py.File(tmp_path / "images.h5", "r") as f, pytest.raises(ValueError, match="NaN"):
        pretrained().fit(f["x"])


# -- transform ---------------------------------------------------------------------------------

def test_transform_with_other_image_shape_names_both(mnist, fitted_on_mnist):
    with pytest.raises(ValueError, match=r"\(1, 20, 20\).*\(1, 28, 28\)"):
        fitted_on_mnist.transform(mnist[0][:, :20, :20])


def test_transform_before_fit(mnist):
    with pytest.raises(NotFittedError):
        pretrained().transform(mnist[0])


def test_flipped_views_are_accepted(mnist, fitted_on_mnist):
    flipped = mnist[0][:, :, ::-1]
    np.testing.assert_array_equal(fitted_on_mnist.transform(flipped),
                                  fitted_on_mnist.transform(flipped.copy()))


# -- weights -----------------------------------------------------------------------------------

def test_missing_weights_file(mnist, tmp_path):
    for missing in ("nonexistent/file.pt", str(tmp_path / "missing.pt")):
        with pytest.raises(InputError, match="does not exist"):
            pretrained(weights=missing).fit(mnist[0])


def test_weights_file_that_is_not_a_model(mnist, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a torch file")
    with pytest.raises(InputError, match="cannot read weights file.*junk.pt"):
        pretrained(weights=junk).fit(mnist[0])
    not_tensors = tmp_path / "config.pt"
    torch.save({"lr": 0.1, "name": "resnet"}, not_tensors)
    with pytest.raises(InputError, match="neither a featurekit model.*nor a state_dict"):
        pretrained(weights=not_tensors).fit(mnist[0])


def test_torchvision_state_dict_file(cifar, tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pt"
    torch.save(model.state_dict(), path)  # the full state, classifier head included
    X = cifar[0][:4]
    est = featurekit.create("pretrained", backbone="resnet18", weights=path, device="cpu",
                            random_state=0, verbose=0).fit(X)
    assert torch.equal(est.backbone_.conv1.weight, model.conv1.weight)
    spec = est.input_spec_
    assert spec.working_shape == (3, 32, 32) and spec.mean == (0.485, 0.456, 0.406)

    model.fc = torch.nn.Identity()
    x = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-4, atol=1e-5)


def test_exported_backbone_loads_as_pretrained_weights(cifar, tmp_path):
    X, y = cifar
    trained = featurekit.create("supervised", **TINY).fit(X, y)
    path = tmp_path / "backbone.pt"
    trained.export_backbone(path)
    est = pretrained(weights=path).fit(X)
    saved = torch.load(path, weights_only=True)
    loaded = est.backbone_.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert est.transform(X).shape == (24, 32)


def test_weights_of_another_shape_get_a_clear_error(mnist, tmp_path):
    X, y = mnist
    path = tmp_path / "grey_backbone.pt"
    featurekit.create("supervised", **TINY).fit(X, y).export_backbone(path)
    # A plain state_dict means RGB input (ImageNet-style), but this one was trained on grey.
    with pytest.raises(InputError, match="do not fit backbone"):
        pretrained(weights=path).fit(X)


def test_saved_model_as_weights_starts_from_its_backbone(mnist, tmp_path):
    X, y = mnist
    ssl = featurekit.create("simclr", **TINY).fit(X)
    path = tmp_path / "simclr.pt"
    ssl.save(path)
    sup = featurekit.create("supervised", **{**TINY, "max_epochs": 0}, weights=path).fit(X, y)
    expected = ssl.backbone_.state_dict()

    def assert_starts_from_ssl(est):
        state = est.backbone_.state_dict()
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected)

    assert_starts_from_ssl(sup)
    np.testing.assert_array_equal(sup.transform(X), ssl.transform(X))
    # weights is a plain parameter, so a clone (a GridSearchCV candidate) starts there too.
    twin = clone(sup)
    assert twin.weights == path
    assert_starts_from_ssl(twin.fit(X, y))
