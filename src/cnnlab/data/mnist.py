"""The MNIST handwritten digits: locate, download, verify and load.

LeCun, Cortes & Burges, "THE MNIST DATABASE of handwritten digits": 60,000
training and 10,000 test images of 28x28 grey pixels with labels 0-9, in four
IDX files. The files live in `<data dir>/mnist/`, gzipped or not; the data
dir is `--data-dir`, else $CNNLAB_DATA, else the user cache folder. Files are
checked by the MD5 of their uncompressed content, the canonical values below,
because mirrors serve the same content under different gzip encodings.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import content_md5, download_file
from cnnlab.data.idx import read_idx
from cnnlab.errors import DataError

ENV_VAR = "CNNLAB_DATA"
log = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

MD5: dict[str, str] = {
    TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
    TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
    TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
    TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
}

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

CLASSES = tuple(str(digit) for digit in range(10))
IMAGE_SIZE = (28, 28)


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: `data_dir` if given, else $CNNLAB_DATA, else the user cache folder.

    The cache folder is $XDG_CACHE_HOME/cnnlab, or ~/.cache/cnnlab.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if env := os.environ.get(ENV_VAR):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    cache = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return cache / "cnnlab"


def find_file(folder: Path, name: str) -> Path | None:
    """`folder/name` (uncompressed) or `folder/name.gz`, whichever exists first; else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(
    data_dir: str | Path | None = None,
    download: bool = True,
    mirrors: Sequence[str] = MIRRORS,
    md5s: Mapping[str, str] = MD5,
) -> tuple[ImageDataset, ImageDataset]:
    """The MNIST (train, test) datasets: images uint8 (N, 1, 28, 28), labels int64 0-9.

    Missing files are downloaded from `mirrors` (base URLs; the file name plus
    ".gz" is appended) and checked against `md5s` when `download` is true.
    Decoded files are cached in this process, keyed by path, size and mtime.
    Raises DataError naming the missing or bad files and where they belong.
    """
    folder = resolve_data_dir(data_dir) / "mnist"
    paths = _locate(folder, download, mirrors, md5s)
    return (
        _dataset(paths[TRAIN_IMAGES], paths[TRAIN_LABELS], "mnist-train"),
        _dataset(paths[TEST_IMAGES], paths[TEST_LABELS], "mnist-test"),
    )


def verify_mnist(
    data_dir: str | Path | None = None, md5s: Mapping[str, str] = MD5
) -> list[dict[str, Any]]:
    """One report per MNIST file: where it is, its uncompressed MD5 against the expected one.

    Each dict has keys file, path, found, md5, expected_md5, ok, shape, dtype
    and error (the message when the file cannot be read). Problems are
    reported, never raised.
    """
    folder = resolve_data_dir(data_dir) / "mnist"
    reports = []
    for name in FILES:
        path = find_file(folder, name)
        report: dict[str, Any] = {
            "file": name,
            "path": str(path or folder / f"{name}.gz"),
            "found": path is not None,
            "md5": None,
            "expected_md5": md5s[name],
            "ok": False,
            "shape": None,
            "dtype": None,
            "error": None,
        }
        if path is not None:
            try:
                report["md5"] = content_md5(path)
                tensor = _read(path)
                report["shape"] = tuple(tensor.shape)
                report["dtype"] = str(tensor.dtype).removeprefix("torch.")
            except DataError as e:
                report["error"] = str(e)
            report["ok"] = report["error"] is None and report["md5"] == md5s[name]
        reports.append(report)
    return reports


def _locate(
    folder: Path, download: bool, mirrors: Sequence[str], md5s: Mapping[str, str]
) -> dict[str, Path]:
    """The path of each MNIST file in `folder`, downloading missing ones if allowed."""
    paths = {name: find_file(folder, name) for name in FILES}
    missing = [name for name, path in paths.items() if path is None]
    hint = f"or pass --data-dir or set {ENV_VAR} to a folder whose mnist/ subfolder holds them"
    if missing and not download:
        raise DataError(
            f"MNIST files missing: {', '.join(missing)} (or their .gz); put them in {folder}, "
            f"{hint} (downloading is off)"
        )
    for i, name in enumerate(missing):
        dest = folder / f"{name}.gz"
        urls = [f"{base.rstrip('/')}/{name}.gz" for base in mirrors]
        log.info("downloading %s.gz into %s", name, folder)
        try:
            paths[name] = download_file(urls, dest, md5s[name])
        except DataError as e:
            raise DataError(f"MNIST files missing: {', '.join(missing[i:])}; {e}, {hint}") from None
    return {name: path for name, path in paths.items() if path is not None}


def _dataset(images_path: Path, labels_path: Path, name: str) -> ImageDataset:
    """An ImageDataset from one images file and one labels file, after checking both."""
    images, labels = _read(images_path), _read(labels_path)
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != IMAGE_SIZE:
        raise DataError(
            f"{images_path.name}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dtype != torch.uint8 or labels.dim() != 1:
        raise DataError(
            f"{labels_path.name}: expected uint8 labels of shape (N,), "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path.name} has {len(images):,} images but "
            f"{labels_path.name} has {len(labels):,} labels"
        )
    if labels.numel() and int(labels.max()) >= len(CLASSES):
        raise DataError(f"{labels_path.name}: label {int(labels.max())} is outside 0-9")
    return ImageDataset(images.unsqueeze(1).clone(), labels.long(), CLASSES, name)


def _read(path: Path) -> torch.Tensor:
    """read_idx(path), cached in this process while the file's size and mtime stay the same."""
    try:
        stat = path.stat()
    except OSError as e:
        raise DataError(f"{path.name}: cannot read: {e.strerror or e}") from None
    return _read_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, size: int, mtime_ns: int) -> torch.Tensor:
    """The decoded file; size and mtime are part of the key so edits invalidate it."""
    return read_idx(path)
