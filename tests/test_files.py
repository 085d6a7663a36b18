"""load_data: .npz arrays, image folders (ImageFolder labels) and .txt file lists."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from featurekit.data.files import LoadedData, load_data
from featurekit.exceptions import InputError


def write_png(path, value=0, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8), mode="L").save(path)
    return path


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "images"
    for label in ("cat", "dog"):
        for i in range(3):
            write_png(root / label / f"{i}.png", value=40 * i)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_npz_with_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(12.0).reshape(4, 3), y=np.array([0, 1, 0, 1]))
    data = load_data(path)
    assert isinstance(data, LoadedData)
    assert data.X.shape == (4, 3) and data.y.tolist() == [0, 1, 0, 1]
    assert data.keys is None and data.modality is None and not data.is_files
    assert "d.npz" in data.description and len(data) == 4
    assert load_data(path, labels=False).y is None


def test_npz_capital_x_without_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((3, 8, 8), np.uint8))
    data = load_data(path)
    assert data.X.shape == (3, 8, 8) and data.y is None


def test_npz_sample_rate_marks_audio(tmp_path):
    path = tmp_path / "speech.npz"
    np.savez(path, x=np.zeros((2, 100), np.int16), y=[3, 4], sample_rate=8000)
    data = load_data(path)
    assert data.modality == "audio" and data.sample_rate == 8000
    assert "8000 Hz" in data.description


@pytest.mark.parametrize("arrays, match", [
    ({"features": np.zeros((2, 2))}, "no array named 'x'.*features"),
    ({"x": np.zeros((2, 2)), "y": np.zeros(3)}, "one label per row"),
    ({"x": np.zeros((0, 2))}, "no samples"),
    ({"x": np.array([{"a": 1}, None], dtype=object)}, "plain arrays"),
])
def test_npz_errors(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=match):
        load_data(path)


def test_folder_of_class_subfolders(class_folder):
    data = load_data(class_folder)
    assert data.is_files and data.modality == "image"
    assert data.keys == [os.path.join(c, f"{i}.png") for c in ("cat", "dog") for i in range(3)]
    assert data.y.tolist() == ["cat"] * 3 + ["dog"] * 3
    assert all(os.path.isfile(p) for p in data.X)
    assert "2 class folders" in data.description
    assert load_data(class_folder, labels=False).y is None


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png")
    write_png(tmp_path / "sub" / "x.png")  # one file at the top means no class folders
    data = load_data(tmp_path)
    assert data.y is None and len(data.X) == 4 and "sub/x.png".replace("/", os.sep) in data.keys


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no image files"):
        load_data(tmp_path)


def test_file_list_with_labels(class_folder):
    lst = class_folder / "list.txt"
    lst.write_text(f"# comment\ncat/0.png\tcat\n\ndog/1.png 7\n{class_folder / 'dog/2.png'} 8\n")
    data = load_data(lst)
    assert data.keys == ["cat/0.png", "dog/1.png", str(class_folder / "dog/2.png")]
    assert data.y.tolist() == ["cat", "7", "8"]
    assert data.X[0] == str(class_folder / "cat" / "0.png") and data.modality == "image"


def test_file_list_without_labels_and_spaces(tmp_path):
    write_png(tmp_path / "a b.png")
    write_png(tmp_path / "c.png")
    lst = tmp_path / "list.txt"
    lst.write_text("a b.png\nc.png\n")
    data = load_data(lst)
    assert data.keys == ["a b.png", "c.png"] and data.y is None


@pytest.mark.parametrize("text, match", [
    ("missing.png\n", "line 1: no file 'missing.png'"),
    ("a.png\ta\nb.png\n", "label every line or none"),
    ("# only a comment\n", "names no files"),
])
def test_file_list_errors(tmp_path, text, match):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    (tmp_path / "list.txt").write_text(text)
    with pytest.raises(InputError, match=match):
        load_data(tmp_path / "list.txt")


@pytest.mark.parametrize("name", ["missing.npz", "table.csv"])
def test_other_paths_name_the_accepted_kinds(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text("1,2\n")
    with pytest.raises(InputError, match=f"{name}.*\\.npz.*folder of images.*\\.txt"):
        load_data(path)


def test_npz_audio_lengths_give_waveforms(tmp_path):
    from featurekit.data import Waveforms

    path = tmp_path / "speech.npz"
    np.savez(path, x=np.zeros((2, 100), np.int16), length=[60, 300], sample_rate=8000)
    data = load_data(path)
    assert isinstance(data.X, Waveforms) and data.X.sample_rate == 8000
    assert data.X.lengths.tolist() == [60, 100] and len(data) == 2
