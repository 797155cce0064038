"""CIFAR-10: locate, download, verify and load, from the python batches or the JPEG copy.

Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images": 50,000 training
and 10,000 test colour images of 32x32 pixels in 10 classes. Two sources:

- The canonical python version, cifar-10-python.tar.gz from
  https://www.cs.toronto.edu/~kriz/cifar.html (MD5 of the archive below), whose pickled
  batches data_batch_1..5 and test_batch each hold a dict: "data", a uint8 array (10000,
  3072) whose rows are an image's 1,024 red, then green, then blue values in row-major
  order, and "labels", 0-9. They are read straight from the archive (or from an extracted
  cifar-10-batches-py/ folder) by an unpickler that can build nothing but dicts, lists,
  strings, numbers and numpy arrays, so a tampered file cannot run code.
- A JPEG re-encoded copy, a zip of train/<class>/*.jpg and test/<class>/*.jpg, read as an
  image folder. Its pixels differ a little from the canonical ones, so its datasets are
  named "cifar10-jpeg-train" and "cifar10-jpeg-test" and numbers measured on it say so.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Check, download_file
from cnnlab.data.image_folder import load_image_folder
from cnnlab.data.mnist import ENV_VAR, resolve_data_dir
from cnnlab.errors import DataError

log = logging.getLogger(__name__)

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (3, 32, 32)
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
JPEG_ZIP = Path("cifar10-jpeg", "cifar10-jpeg.zip")
JPEG_NAME = "cifar10-jpeg"
JPEG_SHA256 = "ead45e06542622104d3e17a0e554f18656c4cf310408a9ee502d835a28cf897d"  # its README


def load_cifar10(
    data_dir: str | Path | None = None,
    download: bool = True,
    urls: tuple[str, ...] = URLS,
    md5: str = ARCHIVE_MD5,
    cache_dir: str | Path | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """The CIFAR-10 (train, test) datasets: images uint8 (N, 3, 32, 32), labels int64 0-9.

    Looks in the data dir (see mnist.resolve_data_dir) for the python batches in
    cifar10/ (the archive or its extracted folder), else for cifar10-jpeg/cifar10-jpeg.zip
    (then the datasets are named cifar10-jpeg-*), else downloads the archive from `urls`
    and checks its MD5 when `download` is true. A log line says which source was used.
    """
    root = resolve_data_dir(data_dir)
    folder = root / "cifar10"
    batches = next((p for p in (folder / BATCH_FOLDER, folder / ARCHIVE) if p.exists()), None)
    if batches is not None:
        log.info("CIFAR-10: the python batches in %s", batches)
        return load_cifar10_batches(batches)
    jpeg = root / JPEG_ZIP
    if jpeg.is_file():
        log.info(
            "CIFAR-10: no python batches in %s, so the JPEG re-encoded copy %s "
            "(its numbers are cifar10-jpeg numbers)",
            folder,
            jpeg,
        )
        return load_cifar10_jpeg(jpeg, cache_dir)
    hint = f"or pass --data-dir or set {ENV_VAR} to a folder holding cifar10/ or {JPEG_ZIP}"
    if not download:
        raise DataError(
            f"CIFAR-10 not found: put {ARCHIVE} (or its {BATCH_FOLDER}/) in {folder}, or "
            f"{JPEG_ZIP.name} in {jpeg.parent}, {hint} (downloading is off)"
        )
    log.info("downloading %s into %s", ARCHIVE, folder)
    archive = download_file(list(urls), folder / ARCHIVE, archive_md5_check(md5))
    return load_cifar10_batches(archive)


def archive_md5_check(expected: str) -> Check:
    """A check that a file's bytes, as they are (not gunzipped), have MD5 `expected`."""

    def check(path: Path) -> None:
        md5 = _file_digest(path, hashlib.md5())
        if md5 != expected.lower():
            raise DataError(f"its MD5 is {md5}, expected {expected}")

    return check


def verify_cifar10(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One report per CIFAR-10 source found in the data dir, in the order `load_cifar10`
    tries them: the archive (its MD5, then every batch read), the extracted folder (every
    batch read), the JPEG zip (its SHA-256 against the copy's published one, and the
    number of images per split). Each dict has keys file, path, found, ok, shape and
    detail; when nothing is found, one report says where the files go. Never raises.
    """
    root = resolve_data_dir(data_dir)
    folder = root / "cifar10"
    reports = []
    for path in (folder / ARCHIVE, folder / BATCH_FOLDER, root / JPEG_ZIP):
        if not path.exists():
            continue
        report: dict[str, Any] = {"file": path.name, "path": str(path), "found": True}
        try:
            if path == root / JPEG_ZIP:
                digest = _file_digest(path, hashlib.sha256())
                names = _jpeg_zip_counts(path)
                report["detail"] = f"sha256 {digest[:16]}..., " + ", ".join(
                    f"{split} {n:,}" for split, n in names.items()
                )
                expected = {"train": 50_000, "test": 10_000}
                report["ok"] = digest == JPEG_SHA256 and names == expected
                if digest != JPEG_SHA256:
                    report["detail"] += f"; expected sha256 {JPEG_SHA256[:16]}..."
            else:
                detail = ""
                if path.is_file():
                    archive_md5_check(ARCHIVE_MD5)(path)
                    detail = f"md5 {ARCHIVE_MD5}, "
                train, test = load_cifar10_batches(path)
                report["shape"] = tuple(train.images.shape)
                report["detail"] = detail + f"train {len(train):,}, test {len(test):,}"
                report["ok"] = True
        except DataError as e:
            report.update(ok=False, detail=str(e))
        reports.append(report)
    if not reports:
        reports.append(
            {
                "file": ARCHIVE,
                "path": str(folder / ARCHIVE),
                "found": False,
                "ok": False,
                "detail": f"not found; nor {BATCH_FOLDER}/ beside it, nor {root / JPEG_ZIP}",
            }
        )
    return reports


def _file_digest(path: Path, digest: Any) -> str:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _jpeg_zip_counts(path: Path) -> dict[str, int]:
    """The number of .jpg files under train/ and test/ in the zip."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.lower().endswith(".jpg")]
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip ({e})") from None
    return {split: sum(n.startswith(f"{split}/") for n in names) for split in ("train", "test")}


def load_cifar10_batches(path: str | Path) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) from cifar-10-python.tar.gz or its extracted cifar-10-batches-py/ folder."""
    path = Path(path)
    batches = _read_folder(path) if path.is_dir() else _read_archive(path)
    train = [batches[name] for name in TRAIN_BATCHES]
    return (
        ImageDataset(
            torch.cat([images for images, _ in train]),
            torch.cat([labels for _, labels in train]),
            CLASSES,
            "cifar10-train",
        ),
        ImageDataset(*batches[TEST_BATCH], CLASSES, "cifar10-test"),
    )


def load_cifar10_jpeg(
    path: str | Path, cache_dir: str | Path | None = None
) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) from the JPEG re-encoded zip, named cifar10-jpeg-train and -test.

    Decoded once and cached (see image_folder); an unreadable file is refused.
    """
    train, test = load_image_folder(
        path, name=JPEG_NAME, channels=3, on_error="raise", cache_dir=cache_dir
    )
    if train.classes != CLASSES or train.image_shape != IMAGE_SHAPE:
        raise DataError(
            f"{path}: expected the CIFAR-10 classes ({', '.join(CLASSES)}) of 3x32x32 images, "
            f"got {', '.join(train.classes)} of {'x'.join(map(str, train.image_shape))}"
        )
    return train, test


def read_batch(file: IO[bytes], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch: images uint8 (N, 3, 32, 32) and labels int64 (N,).

    Python 2 strings are read as latin-1, as numpy documents for arrays pickled by Python 2.
    """
    try:
        batch = _BatchUnpickler(file, encoding="latin1").load()
    except Exception as e:  # an untrusted pickle can fail in any way; it is refused
        raise DataError(f"{name}: not a readable CIFAR-10 batch ({e})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{name}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    size = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (size,):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{name}: expected 'data' a uint8 array (N, {size}), got {got}")
    try:
        targets = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        targets = np.empty(0)
    if targets.shape != (len(data),) or (
        targets.size and not 0 <= targets.min() <= targets.max() < 10
    ):
        raise DataError(f"{name}: expected {len(data):,} labels 0-9 in 'labels'")
    images = torch.from_numpy(np.array(data).reshape(-1, *IMAGE_SHAPE))  # (N, 3, 32, 32)
    return images, torch.from_numpy(targets)


def _read_archive(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The six batches, read from the .tar.gz without extracting it."""
    wanted, batches = {*TRAIN_BATCHES, TEST_BATCH}, {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if base in wanted and member.isfile():
                    file = tar.extractfile(member)
                    batches[base] = read_batch(file, f"{path}/{member.name}")  # type: ignore[arg-type]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .tar.gz ({e}); expected {ARCHIVE}") from None
    if missing := sorted(wanted - batches.keys()):
        raise DataError(f"{path}: no {', '.join(missing)} in it; expected {ARCHIVE}")
    return batches


def _read_folder(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The six batches from an extracted cifar-10-batches-py/ folder."""
    batches = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        try:
            with open(folder / name, "rb") as f:
                batches[name] = read_batch(f, str(folder / name))
        except OSError as e:
            raise DataError(f"{folder / name}: cannot read: {e.strerror or e}") from None
    return batches


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as Python 3's protocol 2 pickles of bytes call it, for latin-1 only."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return codecs.encode(text, "latin1")


# How numpy pickles an array: private reconstructors, in numpy.core before numpy 2, numpy._core
# since; taken from numpy's own pickling so that they are the installed version's.
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # _reconstruct(ndarray, shape, dtype), then setstate
_FROMBUFFER = np.empty(0).__reduce_ex__(5)[0]  # _frombuffer(buffer, dtype, shape, order)
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays besides the builtin containers.

    Python's documentation, "Restricting Globals": every class or function a pickle names
    goes through find_class, so refusing all but numpy's array reconstruction means no
    pickle can call anything else (os.system, eval, ...).
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: a CIFAR-10 batch holds only "
                "numpy arrays, dicts, lists, strings and numbers"
            ) from None
