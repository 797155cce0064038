"""CIFAR-10: pickled batches read safely, the archive downloaded with its checksum, the JPEG zip.

Downloads use file:// URLs of a small synthetic archive with the real one's structure; the real
data test reads the shared JPEG zip (the python batches are not in the shared folder).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import image_decode
from cnnlab.data.cifar10 import (
    ARCHIVE,
    BATCH_FOLDER,
    CLASSES,
    TEST_BATCH,
    TRAIN_BATCHES,
    load_cifar10,
    load_cifar10_batches,
    load_cifar10_jpeg,
    read_batch,
    verify_cifar10,
)
from cnnlab.data.preprocessing import CIFAR10
from cnnlab.data.sources import load_dataset
from cnnlab.data.statistics import channel_mean_std
from cnnlab.errors import DataError

PER_BATCH = {**dict.fromkeys(TRAIN_BATCHES, 3), TEST_BATCH: 4}


def _batch(name: str, n: int, seed: int) -> dict:
    """A batch as the real files hold it: str keys, uint8 rows of R, G, B planes, int labels."""
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"{name} of 5",
        "labels": [int(x) for x in rng.integers(0, 10, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def _archive(path: Path, protocol: int = 2) -> dict[str, dict]:
    """A cifar-10-python.tar.gz of small batches; the batches by name."""
    batches = {name: _batch(name, n, seed) for seed, (name, n) in enumerate(PER_BATCH.items())}
    members = {name: pickle.dumps(b, protocol=protocol) for name, b in batches.items()}
    members["batches.meta"] = pickle.dumps({"label_names": list(CLASSES)}, protocol=protocol)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{BATCH_FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_batches_are_read_from_the_archive_in_the_published_layout(
    tmp_path: Path, protocol: int
) -> None:
    batches = _archive(tmp_path / ARCHIVE, protocol)
    train, test = load_cifar10_batches(tmp_path / ARCHIVE)
    assert (train.name, test.name) == ("cifar10-train", "cifar10-test")
    assert train.classes == CLASSES and train.classes[0] == "airplane"
    assert (len(train), len(test)) == (15, 4) and train.image_shape == (3, 32, 32)
    first = batches["data_batch_1"]["data"][0]  # 1,024 red, 1,024 green, 1,024 blue, row-major
    assert train.images[0, 0].flatten().tolist() == first[:1024].tolist()
    assert int(train.images[0, 2, 1, 0]) == first[2048 + 32]
    last = batches["data_batch_5"]["data"][-1]
    assert train.images[-1].flatten().tolist() == last.tolist()
    labels = [x for name in TRAIN_BATCHES for x in batches[name]["labels"]]
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == labels
    assert test.labels.tolist() == batches[TEST_BATCH]["labels"]


def _python2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """{'data': data, 'labels': labels} as Python 2's cPickle (protocol 2) wrote the real files:
    byte strings, numpy.core names, the array's pixels as one string."""

    def string(b: bytes) -> bytes:
        return b"T" + struct.pack("<i", len(b)) + b  # BINSTRING

    rows, cols = data.shape
    return b"".join(
        [
            b"\x80\x02}(" + string(b"data"),
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b"),
            b"\x87R(K\x01M" + struct.pack("<H", rows) + b"M" + struct.pack("<H", cols) + b"\x86",
            b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R(K\x03" + string(b"|"),
            b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + string(data.tobytes()) + b"tb",
            string(b"labels") + b"](" + b"".join(b"K" + bytes([x]) for x in labels) + b"eu.",
        ]
    )


def test_a_batch_pickled_by_python_2_is_read() -> None:
    data = np.random.default_rng(0).integers(0, 256, (2, 3072), dtype=np.uint8)
    images, labels = read_batch(io.BytesIO(_python2_batch(data, [3, 9])), "data_batch_1")
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [3, 9]
    assert images.reshape(2, -1).numpy().tolist() == data.tolist()


def test_an_extracted_folder_is_read_like_the_archive(tmp_path: Path) -> None:
    _archive(tmp_path / "a" / ARCHIVE)
    with tarfile.open(tmp_path / "a" / ARCHIVE) as tar:
        tar.extractall(tmp_path / "data" / "cifar10", filter="data")
    train, test = load_cifar10(tmp_path / "data", download=False)
    archived, _ = load_cifar10_batches(tmp_path / "a" / ARCHIVE)
    assert torch.equal(train.images, archived.images) and len(test) == 4


def test_the_archive_is_downloaded_and_its_md5_checked(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / ARCHIVE
    _archive(mirror)
    md5 = hashlib.md5(mirror.read_bytes()).hexdigest()
    train, _ = load_cifar10(tmp_path / "data", urls=(mirror.as_uri(),), md5=md5)
    assert len(train) == 15
    assert (tmp_path / "data" / "cifar10" / ARCHIVE).read_bytes() == mirror.read_bytes()


def test_a_checksum_mismatch_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / ARCHIVE
    _archive(mirror)
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path / "data", urls=(mirror.as_uri(),), md5="0" * 32)
    message = str(info.value)
    assert f"could not download {ARCHIVE}" in message and "its MD5 is " in message
    assert "expected 00000000000000000000000000000000" in message and "\n" not in message
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []  # nothing half-written kept


class _Shell:
    """Unpickling this calls os.system: what a tampered batch file would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_the_unpickler_refuses_a_pickle_that_calls_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _Shell(f"touch {marker}"), "labels": [0]}, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_1: not a readable .*refused to load posix"):
        read_batch(io.BytesIO(evil), "data_batch_1")
    folder = tmp_path / "cifar10" / BATCH_FOLDER
    folder.mkdir(parents=True)
    for name, batch in ((n, _batch(n, 2, 0)) for n in PER_BATCH):
        (folder / name).write_bytes(evil if name == TEST_BATCH else pickle.dumps(batch))
    with pytest.raises(DataError, match="test_batch: not a readable CIFAR-10 batch"):
        load_cifar10(tmp_path, download=False)
    assert not marker.exists()


def test_a_malformed_batch_is_refused_by_name() -> None:
    batch = _batch("data_batch_1", 2, 0)
    wrong_shape = {**batch, "data": batch["data"].reshape(2, 32, 96)}
    with pytest.raises(DataError, match=r"data_batch_1: expected 'data' a uint8 array \(N, 3072\)"):
        read_batch(io.BytesIO(pickle.dumps(wrong_shape)), "data_batch_1")
    bad_labels = {**batch, "labels": [0, 10]}
    with pytest.raises(DataError, match="data_batch_1: expected 2 labels 0-9"):
        read_batch(io.BytesIO(pickle.dumps(bad_labels)), "data_batch_1")


def _jpeg_zip(path: Path) -> None:
    """A tiny CIFAR-shaped zip: one 32x32 JPEG per class in train/ and in test/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "test"):
            for k, name in enumerate(CLASSES):
                buffer = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), k * 20, np.uint8)).save(buffer, "JPEG")
                zf.writestr(f"{split}/{name}/0000.jpg", buffer.getvalue())


def test_without_the_batches_the_jpeg_zip_is_used_and_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    _jpeg_zip(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.zip")
    with caplog.at_level(logging.INFO, logger="cnnlab.data.cifar10"):
        train, test = load_dataset("cifar10", tmp_path, download=False)
    assert (train.name, test.name) == ("cifar10-jpeg-train", "cifar10-jpeg-test")
    assert train.classes == CLASSES and train.image_shape == (3, 32, 32) and len(test) == 10
    assert "JPEG re-encoded copy" in caplog.text

    _archive(tmp_path / "cifar10" / ARCHIVE)  # with both, the canonical batches win
    train, _ = load_dataset("cifar10", tmp_path, download=False)
    assert train.name == "cifar10-train"


def test_without_any_source_and_downloads_off_the_error_names_both(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"put {ARCHIVE} .* or cifar10-jpeg.zip in"):
        load_cifar10(tmp_path, download=False)


@pytest.fixture(scope="module")
def real_cifar10(cifar10_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shared JPEG zip decoded once into a fresh cache; the first load's time."""
    cache = tmp_path_factory.mktemp("cifar10-cache")
    path = cifar10_data_dir / "cifar10-jpeg" / "cifar10-jpeg.zip"
    start = time.perf_counter()
    train, test = load_cifar10_jpeg(path, cache)
    return {
        "train": train,
        "test": test,
        "cache": cache,
        "path": path,
        "first_s": time.perf_counter() - start,
    }


@pytest.mark.slow
def test_real_cifar10_jpeg_zip_has_the_canonical_sets(real_cifar10: dict) -> None:
    train, test = real_cifar10["train"], real_cifar10["test"]
    assert (len(train), len(test)) == (50_000, 10_000)
    assert train.classes == test.classes == CLASSES  # airplane .. truck, the canonical order
    assert train.images.shape == (50_000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.bincount().tolist() == [5_000] * 10
    assert test.labels.bincount().tolist() == [1_000] * 10
    assert (train.name, test.name) == ("cifar10-jpeg-train", "cifar10-jpeg-test")


@pytest.mark.slow
def test_real_cifar10_jpeg_second_load_comes_from_the_cache(
    real_cifar10: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(image_decode, "_decode", fail)
    start = time.perf_counter()
    train, test = load_cifar10_jpeg(real_cifar10["path"], real_cifar10["cache"])
    seconds = time.perf_counter() - start
    assert torch.equal(train.images, real_cifar10["train"].images)
    assert torch.equal(test.labels, real_cifar10["test"].labels)
    assert seconds < real_cifar10["first_s"] / 3, (seconds, real_cifar10["first_s"])


@pytest.mark.slow
def test_real_cifar10_jpeg_statistics_are_close_to_the_published_ones(real_cifar10: dict) -> None:
    mean, std = channel_mean_std(real_cifar10["train"])
    assert np.allclose(mean, CIFAR10.mean, atol=0.005), mean  # JPEG re-encoding moves them a little
    assert np.allclose(std, CIFAR10.std, atol=0.005), std


def test_verify_checks_each_source_in_the_order_they_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.data import cifar10

    (missing,) = verify_cifar10(tmp_path)
    assert not missing["found"] and not missing["ok"] and "cifar10-jpeg.zip" in missing["detail"]

    archive = tmp_path / "cifar10" / ARCHIVE
    _archive(archive)
    _jpeg_zip(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.zip")
    tarred, zipped = verify_cifar10(tmp_path)
    assert not tarred["ok"] and "its MD5 is" in tarred["detail"]  # not the real archive's MD5
    assert not zipped["ok"] and "train 10, test 10" in zipped["detail"]  # nor the real zip
    assert "expected sha256 ead45e0654262210" in zipped["detail"]

    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    tarred, _ = verify_cifar10(tmp_path)
    assert tarred["ok"] and tarred["shape"] == (15, 3, 32, 32) and "test 4" in tarred["detail"]


def test_verify_passes_on_the_real_jpeg_zip(cifar10_data_dir: Path) -> None:
    (report,) = verify_cifar10(cifar10_data_dir)
    assert report["ok"], report
    assert report["detail"].endswith("train 50,000, test 10,000")
