"""Image folders and zips of class sub-folders: layout, pixels, sizes, bad files, the cache."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import image_decode
from cnnlab.data.image_folder import (
    UnreadableImagesWarning,
    load_image_folder,
    read_image_folder,
)
from cnnlab.data.sources import load_dataset
from cnnlab.errors import CnnlabError, DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches into its own folder, never the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(folder))
    return folder


def _save(path: Path, pixels: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)


def _tree(
    root: Path,
    splits: tuple[str, ...] = ("train/", "test/"),
    classes: tuple[str, ...] = ("dog", "cat"),
    n: int = 2,
    shape: tuple[int, ...] = (6, 8, 3),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Random PNG images at root/<split><class>/<i>.png; their pixels by relative name."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in splits:
        for c in classes:
            for i in range(n):
                name = f"{split}{c}/{i}.png"
                arrays[name] = rng.integers(0, 256, shape, dtype=np.uint8)
                _save(root / name, arrays[name])
    return arrays


def _chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels if pixels.ndim == 3 else pixels[..., None]).permute(2, 0, 1)


def test_split_folders_give_every_pixel_sorted_classes_and_labels(tmp_path: Path) -> None:
    arrays = _tree(tmp_path / "pets")
    train, test = load_image_folder(tmp_path / "pets")
    assert train.classes == test.classes == ("cat", "dog")  # folder names, sorted
    assert (train.name, test.name) == ("pets-train", "pets-test")
    assert train.images.dtype == torch.uint8 and train.image_shape == (3, 6, 8)
    for split, dataset in (("train/", train), ("test/", test)):
        files = {0: ["cat/0.png", "cat/1.png"], 1: ["dog/0.png", "dog/1.png"]}
        found = [
            (label, _index_of(dataset, arrays[split + f]))
            for label, fs in files.items()
            for f in fs
        ]
        assert sorted(i for _, i in found) == [0, 1, 2, 3]  # each file once
        assert all(dataset.labels[i] == label for label, i in found)


def test_each_split_comes_in_a_seeded_order_not_class_by_class(tmp_path: Path) -> None:
    """So that the first N examples (--limit-train N) are a sample of every class."""
    _tree(tmp_path / "pets", n=8)
    train, _ = load_image_folder(tmp_path / "pets")
    labels = train.labels.tolist()
    assert sorted(labels) == [0] * 8 + [1] * 8 and labels != sorted(labels)
    assert set(labels[:6]) == {0, 1}
    again, _ = load_image_folder(tmp_path / "pets")
    other, _ = load_image_folder(tmp_path / "pets", seed=1)
    assert torch.equal(again.images, train.images) and not torch.equal(other.images, train.images)


def _index_of(dataset, pixels: np.ndarray) -> int:
    """Where the image `pixels` lies in `dataset` (it must lie there once)."""
    hits = [i for i in range(len(dataset)) if torch.equal(dataset.images[i], _chw(pixels))]
    assert len(hits) == 1, hits
    return hits[0]


def test_val_folder_is_the_test_split(tmp_path: Path) -> None:
    _tree(tmp_path / "imnet", splits=("train/", "val/"), n=1)
    train, test = load_image_folder(tmp_path / "imnet")
    assert len(train) == len(test) == 2


def test_grey_folder_has_one_channel_and_a_colour_image_makes_three(tmp_path: Path) -> None:
    arrays = _tree(tmp_path / "digits", shape=(5, 5), n=1)
    train, _ = load_image_folder(tmp_path / "digits")
    assert train.image_shape == (1, 5, 5)
    _index_of(train, arrays["train/cat/0.png"])

    _save(tmp_path / "digits/train/dog/colour.png", np.zeros((5, 5, 3), np.uint8))
    train, _ = load_image_folder(tmp_path / "digits")
    assert train.image_shape == (3, 5, 5)
    grey = np.repeat(arrays["train/cat/0.png"][..., None], 3, axis=2)  # over the channels
    _index_of(train, grey)
    grey_only, _ = load_image_folder(tmp_path / "digits", channels=1)
    assert grey_only.image_shape == (1, 5, 5)


def test_class_folders_without_splits_are_split_per_class_by_the_seed(tmp_path: Path) -> None:
    _tree(tmp_path / "flat", splits=("",), n=10, shape=(4, 4))
    train, test = load_image_folder(tmp_path / "flat", test_fraction=0.3, seed=1)
    assert (len(train), len(test)) == (14, 6)
    assert test.labels.bincount().tolist() == [3, 3]  # 30% of each class
    _, again_test = load_image_folder(tmp_path / "flat", test_fraction=0.3, seed=1)
    assert torch.equal(again_test.images, test.images)
    _, other = load_image_folder(tmp_path / "flat", test_fraction=0.3, seed=2)
    assert not torch.equal(other.images, test.images)
    every = {bytes(x.flatten().tolist()) for x in torch.cat([train.images, test.images])}
    assert len(every) == 20  # disjoint, and together every image


def test_mixed_sizes_are_brought_to_the_most_common_or_the_given_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "mixed"
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        _save(root / f"a/{i}.png", np.full((8, 8, 3), colour, np.uint8))
    _save(root / "b/big.png", np.full((12, 16, 3), (10, 20, 30), np.uint8))
    with caplog.at_level(logging.INFO, logger="cnnlab.data.image_decode"):
        data = read_image_folder(root)
    assert data.images.shape == (4, 3, 8, 8)
    assert data.images[3].flatten(1).unique(dim=1).flatten().tolist() == [10, 20, 30]
    assert "1 images resized to 8x8" in caplog.text
    assert read_image_folder(root, size=(4, 6)).images.shape == (4, 3, 4, 6)
    assert read_image_folder(root, size=5).images.shape == (4, 3, 5, 5)


def _bad_files(root: Path) -> None:
    """A truncated JPEG (its header reads, its pixels do not) and a text file named .png."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    _save(root / "train/cat/broken.jpg", noise, fmt="JPEG")
    data = (root / "train/cat/broken.jpg").read_bytes()
    (root / "train/cat/broken.jpg").write_bytes(data[: len(data) // 2])
    (root / "train/dog/x.png").write_text("not an image\n")


def test_unreadable_files_are_skipped_with_a_warning_naming_them(tmp_path: Path) -> None:
    _tree(tmp_path / "pets", shape=(64, 64, 3))
    _bad_files(tmp_path / "pets")
    with pytest.warns(UnreadableImagesWarning) as record:
        train, test = load_image_folder(tmp_path / "pets")
    message = str(record[0].message)
    assert "skipped 2 unreadable files" in message
    assert (
        "train/cat/broken.jpg (unreadable" in message and "train/dog/x.png (not an image" in message
    )
    assert (len(train), len(test)) == (4, 4) and train.labels.tolist() == [0, 0, 1, 1]
    with pytest.warns(UnreadableImagesWarning):
        skipped = read_image_folder(tmp_path / "pets").skipped  # from the cache: still reported
    assert [name for name, _ in skipped] == ["train/cat/broken.jpg", "train/dog/x.png"]


def test_on_error_raise_refuses_the_first_unreadable_file_in_one_line(tmp_path: Path) -> None:
    _tree(tmp_path / "pets", shape=(64, 64, 3))
    _bad_files(tmp_path / "pets")
    with pytest.raises(DataError) as info:
        load_image_folder(tmp_path / "pets", on_error="raise")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "pets/train/cat/broken.jpg") + ": unreadable")
    assert "(and 1 more unreadable files)" in message


def test_second_load_reads_the_cache_and_a_changed_file_is_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    _tree(tmp_path / "pets")
    calls = []
    decode = image_decode._decode
    monkeypatch.setattr(image_decode, "_decode", lambda *a: calls.append(1) or decode(*a))
    first = read_image_folder(tmp_path / "pets")
    assert not first.from_cache and len(calls) == 8
    assert len(list(cache.glob("pets-*.safetensors"))) == 1

    second = read_image_folder(tmp_path / "pets")
    assert second.from_cache and len(calls) == 8  # nothing decoded
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert torch.equal(second.is_test, first.is_test) and second.classes == first.classes

    _save(tmp_path / "pets/test/cat/0.png", np.zeros((6, 8, 3), np.uint8))
    changed = read_image_folder(tmp_path / "pets")
    assert not changed.from_cache and len(calls) == 16
    assert changed.images[0].sum() == 0  # test/cat/0.png, the new one


def test_a_corrupt_cache_file_is_decoded_again(tmp_path: Path, cache: Path) -> None:
    _tree(tmp_path / "pets")
    first = read_image_folder(tmp_path / "pets")
    (cache_file,) = cache.glob("*.safetensors")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    again = read_image_folder(tmp_path / "pets")
    assert not again.from_cache and torch.equal(again.images, first.images)


def test_zip_and_folder_give_identical_tensors(tmp_path: Path) -> None:
    _tree(tmp_path / "pets", shape=(7, 5))
    (tmp_path / "pets/README.txt").write_text("files beside the split folders are ignored\n")
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as zf:
        for path in sorted((tmp_path / "pets").rglob("*")):
            zf.write(path, path.relative_to(tmp_path).as_posix())  # inside a wrapping pets/
        zf.writestr("__MACOSX/pets/train/cat/._0.png", b"finder litter")
        zf.writestr("pets/train/cat/.DS_Store", b"finder litter")
    folder = load_image_folder(tmp_path / "pets")
    zipped = load_image_folder(tmp_path / "pets.zip", workers=2)
    for a, b in zip(folder, zipped):
        assert a.name == b.name and a.classes == b.classes
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_layout_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder or zip file"):
        load_image_folder(tmp_path / "absent")
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable zip file"):
        load_image_folder(tmp_path / "fake.zip")
    _tree(tmp_path / "one", splits=("",), classes=("cat",), n=2)
    with pytest.raises(DataError, match="found 1 class folder"):
        load_image_folder(tmp_path / "one")
    _tree(tmp_path / "extra", n=1)
    _save(tmp_path / "extra/test/zebra/0.png", np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(DataError, match="test/zebra has no train/zebra"):
        load_image_folder(tmp_path / "extra")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files in class folders"):
        load_image_folder(tmp_path / "empty")


@pytest.mark.parametrize(
    "option",
    [{"on_error": "ignore"}, {"channels": 2}, {"size": (0, 4)}, {"workers": 0}],
)
def test_bad_options_are_refused(tmp_path: Path, option: dict) -> None:
    _tree(tmp_path / "pets", n=1)
    with pytest.raises(CnnlabError, match=f"{next(iter(option))}="):
        read_image_folder(tmp_path / "pets", **option)


def test_load_dataset_reads_a_path_and_lists_the_choices_for_an_unknown_name(
    tmp_path: Path,
) -> None:
    _tree(tmp_path / "pets", n=1)
    train, test = load_dataset(os.fspath(tmp_path / "pets"))
    assert train.name == "pets-train" and len(test) == 2
    with pytest.raises(CnnlabError, match="expected one of mnist, cifar10, or the path of"):
        load_dataset("imagenet")
