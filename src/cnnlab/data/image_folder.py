"""A folder or zip of class sub-folders (the ImageNet layout) as in-memory uint8 datasets.

Layout (Deng et al. 2009's ImageNet tree, torchvision's ImageFolder convention):
ROOT/train/<class>/<image> beside ROOT/test/<class>/<image> (or val/), or ROOT/<class>/<image>
with no split, which `load_image_folder` splits by a seeded draw within each class. ROOT is a
folder or a .zip. One folder wrapping everything (ROOT/<name>/...) is looked through, files
lying directly in ROOT or in a split folder are ignored, and an image deeper inside a class
folder belongs to that class. Class names are the folder names, sorted.

Every image is decoded once (image_decode.py: a few threads; grey or colour, any size) into
one uint8 (N, C, H, W) tensor, cached (tensor_cache.py) under a key made of the source's path,
size and modification time (every file's, for a folder) and the options; later loads read the
cache instead of the images.

- Channels: 1 when every image is grey, else 3 (grey images repeated), unless `channels` says.
- Size: every image is brought to `size` when given, else to the most common size among them
  (ties: the first in file order). An image of another size is scaled to cover it keeping its
  aspect ratio and centre-cropped, and a log line counts them: a folder of mixed sizes loads
  without a flag, and `size` chooses the size instead.
- A file that is not a readable image (truncated, corrupt, a text file named .png) is skipped
  with a warning naming it (on_error="skip") or refused with a one-line DataError naming it
  (on_error="raise"): found while loading, never mid-epoch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.image_decode import decode_images
from cnnlab.data.image_file import open_regular_file
from cnnlab.data.tensor_cache import cache_path, load_cached, save_cached
from cnnlab.errors import CnnlabError, DataError

log = logging.getLogger(__name__)

TRAIN = "train"
TEST_NAMES = ("test", "val")
IGNORED = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
ON_ERROR = ("skip", "raise")
CACHE_VERSION = 1
LAYOUT = "expected ROOT/<class>/<image>, or ROOT/train/<class>/<image> and ROOT/test/<class>/..."


@dataclass(frozen=True)
class FolderImages:
    """Every readable image of a folder or zip, decoded: what the cache file holds."""

    images: torch.Tensor  # uint8 (N, C, H, W), in file-name order
    labels: torch.Tensor  # int64 (N,)
    is_test: torch.Tensor  # bool (N,): from the test (or val) folder
    classes: tuple[str, ...]
    has_splits: bool  # train/ and test/ folders, rather than class folders only
    skipped: tuple[tuple[str, str], ...]  # (file, why) for each unreadable file
    from_cache: bool = False


def load_image_folder(
    root: str | Path,
    *,
    name: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    on_error: str = "skip",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """The (train, test) datasets of a folder or zip of class sub-folders.

    With train/ and test/ (or val/) folders those are the splits; otherwise `test_fraction`
    of each class goes to the test set, drawn with `seed`. The datasets are named
    "<name>-train" and "<name>-test", `name` defaulting to the folder's or zip's name.
    Each split comes in an order drawn with `seed`, as CIFAR-10's batches do, not class by
    class: the first N examples (`--limit-train N`) are then a fair sample of every class.
    The other options are `read_image_folder`'s.
    """
    root = Path(root).expanduser()
    data = read_image_folder(
        root,
        size=size,
        channels=channels,
        on_error=on_error,
        cache_dir=cache_dir,
        workers=workers,
    )
    name = name or _stem(root)
    is_test = data.is_test
    if not data.has_splits:
        is_test = _holdout(data.labels, len(data.classes), test_fraction, seed)
    train, test = (
        _in_seeded_order(data, mask, seed, f"{name}-{split}")
        for mask, split in ((~is_test, "train"), (is_test, "test"))
    )
    for split in (train, test):
        if len(split) == 0:
            raise DataError(f"{root}: no readable images in its {split.name} split; {LAYOUT}")
    return train, test


def _in_seeded_order(data: FolderImages, mask: torch.Tensor, seed: int, name: str) -> ImageDataset:
    """The examples under `mask` in a random order drawn with `seed`, not class by class."""
    index = mask.nonzero().squeeze(1)
    order = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))
    index = index[order]
    return ImageDataset(data.images[index], data.labels[index], data.classes, name)


def read_image_folder(
    root: str | Path,
    *,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    on_error: str = "skip",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> FolderImages:
    """Every image of a folder or zip of class sub-folders, decoded once and then cached.

    size: (height, width) or one side of a square; default the most common size.
    channels: 1 or 3; default 1 when every image is grey, else 3.
    on_error: "skip" (warn, naming each unreadable file) or "raise" (DataError naming it).
    cache_dir: default tensor_cache.default_cache_dir(); workers: threads (default up to 4).
    """
    root = Path(root).expanduser()
    target = _check_options(size, channels, on_error, workers)
    files = _Files(root)
    key = [CACHE_VERSION, files.fingerprint, target, channels]
    cache = cache_path(_stem(root), key, cache_dir)
    data = _load_cache(cache)
    if data is None:
        try:
            entries, classes, has_splits = _layout(files.names(), root)
            data = _decode_all(files, entries, classes, has_splits, target, channels, workers)
        finally:
            files.close()
        _save_cache(cache, data)
    _report(root, data.skipped, on_error)
    return data


def _check_options(
    size: int | tuple[int, int] | None, channels: int | None, on_error: str, workers: int | None
) -> tuple[int, int] | None:
    """`size` as (height, width); a one-line error for any option out of range."""
    if on_error not in ON_ERROR:
        raise CnnlabError(f"on_error={on_error!r}: expected one of {', '.join(ON_ERROR)}")
    if channels not in (None, 1, 3):
        raise CnnlabError(f"channels={channels!r}: expected 1 (grey) or 3 (colour)")
    if workers is not None and workers < 1:
        raise CnnlabError(f"workers={workers!r}: expected at least 1")
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or any(not isinstance(s, int) or s < 1 for s in hw):
        raise CnnlabError(f"size={size!r}: expected a positive int or (height, width)")
    return hw  # type: ignore[return-value]


class _Files:
    """The files of a folder or zip by relative POSIX name, readable from several threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.is_zip = root.is_file()
        if not (self.is_zip or root.is_dir()):
            raise DataError(f"{root}: no such folder or zip file; {LAYOUT}")
        self._names: list[str] | None = None
        self._zip: zipfile.ZipFile | None = None
        self._lock = threading.Lock()
        if self.is_zip:  # the zip's own size and mtime: a cache hit needs no listing
            stat = root.stat()
            self.fingerprint = f"zip {root.resolve()} {stat.st_size} {stat.st_mtime_ns}"
        else:
            self._names, self.fingerprint = self._walk(root)

    def names(self) -> list[str]:
        """Every file but hidden ones and the litter of archivers, sorted."""
        if self._names is None:
            try:
                self._zip = zipfile.ZipFile(self.root)
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{self.root}: not a readable zip file ({e}); {LAYOUT}") from None
            self._names = [i.filename for i in self._zip.infolist() if not i.is_dir()]
        return sorted(n for n in self._names if not _ignored(n))

    @staticmethod
    def _walk(root: Path) -> tuple[list[str], str]:
        """Every file under `root`, and a digest of their names, sizes and mtimes."""
        names, digest = [], hashlib.sha256(str(root.resolve()).encode())
        for folder, subfolders, filenames in os.walk(root):
            subfolders.sort()
            for filename in sorted(filenames):
                path = Path(folder, filename)
                name = path.relative_to(root).as_posix()
                try:
                    stat = path.stat()
                    signature = f"{stat.st_size}\0{stat.st_mtime_ns}"
                except OSError:  # a broken link: reported as unreadable when decoded
                    signature = "-"
                digest.update(f"\0{name}\0{signature}".encode())
                names.append(name)
        return names, f"folder {digest.hexdigest()}"

    def open(self, name: str) -> IO[bytes]:
        """The file `name` (after `names()`), from any thread."""
        if self._zip is None:  # a named pipe among the images must not block a thread
            return open_regular_file(self.root / name, "expected an image file")
        with self._lock:  # one reader at a time: a ZipFile is not safe to share
            return io.BytesIO(self._zip.read(name))

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _ignored(name: str) -> bool:
    """Hidden files and the litter of archivers and file browsers."""
    return any(part.startswith(".") or part in IGNORED for part in name.split("/"))


def _layout(
    names: Sequence[str], root: Path
) -> tuple[list[tuple[str, bool, str]], tuple[str, ...], bool]:
    """(name, is_test, class) of each image file, the sorted classes, and whether split."""
    parts = [(name, PurePosixPath(name).parts) for name in names]
    while True:  # look through a folder that holds every other folder
        inner = [(n, p) for n, p in parts if len(p) >= 2]
        if len({p[0] for _, p in inner}) != 1 or all(len(p) < 3 for _, p in inner):
            break
        parts = [(n, p[1:]) for n, p in inner]
    tops = {p[0] for _, p in parts if len(p) >= 2}
    test_name = next((t for t in TEST_NAMES if t in tops), None)
    has_splits = TRAIN in tops and test_name is not None
    if has_splits:
        splits = {TRAIN: False, test_name: True}
        entries = [(n, splits[p[0]], p[1]) for n, p in parts if len(p) >= 3 and p[0] in splits]
    else:
        entries = [(n, False, p[0]) for n, p in parts if len(p) >= 2]
    if not entries:
        raise DataError(f"{root}: no image files in class folders; {LAYOUT}")
    classes = tuple(sorted({c for _, is_test, c in entries if not is_test}))
    unknown = sorted({c for _, is_test, c in entries if is_test} - set(classes))
    if unknown:
        raise DataError(
            f"{root}: {test_name}/{unknown[0]} has no {TRAIN}/{unknown[0]}; "
            f"expected the same class folders in {TRAIN}/ and {test_name}/"
        )
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folder(s), need at least 2; {LAYOUT}")
    return entries, classes, has_splits


def _decode_all(
    files: _Files,
    entries: list[tuple[str, bool, str]],
    classes: tuple[str, ...],
    has_splits: bool,
    size: tuple[int, int] | None,
    channels: int | None,
    workers: int | None,
) -> FolderImages:
    """Decode every image file (image_decode.py) and label it by its class folder."""
    names = [name for name, _, _ in entries]
    decoded = decode_images(files.open, names, size, channels, workers, str(files.root))
    index = {c: k for k, c in enumerate(classes)}
    kept = [entries[i] for i in decoded.kept]
    return FolderImages(
        images=decoded.images,
        labels=torch.tensor([index[c] for _, _, c in kept], dtype=torch.int64),
        is_test=torch.tensor([is_test for _, is_test, _ in kept], dtype=torch.bool),
        classes=classes,
        has_splits=has_splits,
        skipped=tuple(sorted(decoded.skipped.items())),
    )


def _holdout(labels: torch.Tensor, num_classes: int, fraction: float, seed: int) -> torch.Tensor:
    """A seeded mask putting round(fraction * n) of each class's n examples in the test set."""
    if not 0 < fraction < 1:
        raise CnnlabError(f"test_fraction={fraction!r}: expected a number between 0 and 1")
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for label in range(num_classes):
        members = (labels == label).nonzero().flatten()
        chosen = torch.randperm(len(members), generator=generator)[: round(len(members) * fraction)]
        mask[members[chosen]] = True
    return mask


def _stem(root: Path) -> str:
    """The folder's name, or the zip's without .zip."""
    root = root.resolve()
    return root.stem if root.is_file() else root.name


def _load_cache(path: Path) -> FolderImages | None:
    """The decoded images cached at `path`, or None."""
    cached = load_cached(path)
    if cached is None:
        return None
    tensors, meta = cached
    try:
        return FolderImages(
            images=tensors["images"],
            labels=tensors["labels"],
            is_test=tensors["is_test"],
            classes=tuple(meta["classes"]),
            has_splits=bool(meta["has_splits"]),
            skipped=tuple((str(n), str(why)) for n, why in meta["skipped"]),
            from_cache=True,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _save_cache(path: Path, data: FolderImages) -> None:
    meta = {
        "classes": list(data.classes),
        "has_splits": data.has_splits,
        "skipped": [list(s) for s in data.skipped],
    }
    tensors = {"images": data.images, "labels": data.labels, "is_test": data.is_test}
    save_cached(path, tensors, meta)


def _report(root: Path, skipped: Sequence[tuple[str, str]], on_error: str) -> None:
    """Refuse (on_error="raise") or warn about the unreadable files, naming them."""
    if not skipped:
        return
    if on_error == "raise":
        name, why = skipped[0]
        more = f" (and {len(skipped) - 1:,} more unreadable files)" if len(skipped) > 1 else ""
        raise DataError(f"{root / name}: {why}{more}; remove it, or skip such files")
    listed = ", ".join(f"{name} ({why})" for name, why in skipped[:50])
    more = f" and {len(skipped) - 50:,} more" if len(skipped) > 50 else ""
    warnings.warn(
        f"{root}: skipped {len(skipped):,} unreadable files: {listed}{more}",
        UnreadableImagesWarning,
        stacklevel=3,
    )


class UnreadableImagesWarning(UserWarning):
    """Some files of an image folder could not be read and were left out."""
