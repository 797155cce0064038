"""Many image files decoded in parallel into one uint8 (N, C, H, W) array of one size.

Threads do the work: Pillow releases the GIL while it decodes and resizes. Each file is opened
once when its size is the final one: the first pass decodes the images of the given size (or
of the most common size in a sample of headers) and reads the others' headers; a second pass
decodes, resizing, those whose size turns out not to be the most common one.

- Channels: 1 when every image is grey, else 3 (grey images repeated), unless asked.
- Size: `size` when given, else the most common size (ties: the first in file order). An image
  of another size is scaled to cover it keeping its aspect ratio and centre-cropped.
- Images are made upright (JPEG's EXIF orientation) and opaque (transparency onto white), and
  16-bit grey is scaled to 8 bits, as for `cnnlab predict` (image_file.py).
- A file that cannot be decoded, for whatever reason (files are untrusted input), is left out
  and reported with the reason; only formats in FORMATS are opened.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data.image_file import MAX_PIXELS, _opaque_8bit
from cnnlab.errors import DataError

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""The formats Pillow may open; any other file (EPS would start Ghostscript) is not an image."""
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
Opener = Callable[[str], IO[bytes]]
_CHUNK = 256  # files per task handed to a thread
_ORIENTATION = 0x0112  # the EXIF tag


@dataclass(frozen=True)
class DecodedImages:
    """The readable images, in the order given, and why the others were left out."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    kept: list[int]  # the position of each image among the names given
    skipped: dict[str, str]  # name -> why it cannot be read


def decode_images(
    open_file: Opener,
    names: Sequence[str],
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    workers: int | None = None,
    source: str = "",
) -> DecodedImages:
    """Decode the files `names` (opened by `open_file`, from any thread) to one size and mode.

    `workers` threads (default up to 4); `source` names where the files are, in messages.
    Raises DataError when not one of them is a readable image.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    log.info("decoding %s images of %s with %d threads, once", f"{len(names):,}", source, workers)
    mode = {None: None, 1: "L", 3: "RGB"}[channels]
    guess = size or _likely_size(open_file, names)
    with ThreadPoolExecutor(workers, thread_name_prefix="cnnlab-decode") as pool:
        read = lambda f: _decode(f, guess, mode)  # noqa: E731
        first = _map(pool, names, lambda name: _attempt(open_file, name, read))
        skipped = {n: r for n, r in zip(names, first) if isinstance(r, str)}
        good = [i for i, r in enumerate(first) if not isinstance(r, str)]
        if not good:
            raise DataError(f"{source}/{names[0]}: {skipped[names[0]]}; not one file is an image")
        headers = [first[i][0] for i in good]  # type: ignore[index]
        sizes = Counter(header[:2] for header in headers)
        hw = size or sizes.most_common(1)[0][0]
        grey = channels == 1 if channels else all(header[2] for header in headers)
        final = "L" if grey else "RGB"
        out = np.empty((len(good), len(final), *hw), dtype=np.uint8)
        again = []
        for row, i in enumerate(good):
            pixels = first[i][1]  # type: ignore[index]
            first[i] = ""  # drop the decoded copy as soon as it is in place
            if pixels is None or pixels.shape[1:] != hw:
                again.append(row)
            else:
                out[row] = pixels  # (1, H, W) broadcasts over 3 channels

        def redo(row: int) -> str | None:
            pixels = _attempt(open_file, names[good[row]], lambda f: _decode_to(f, hw, final))
            if isinstance(pixels, str):
                return pixels
            out[row] = pixels
            return None

        errors = dict(zip(again, _map(pool, again, redo)))
    if resized := sum(n for s, n in sizes.items() if s != hw):
        log.info("%s: %s images resized to %dx%d", source, f"{resized:,}", *hw)
    skipped.update((names[good[row]], e) for row, e in errors.items() if e is not None)
    keep = [row for row in range(len(good)) if errors.get(row) is None]
    images = torch.from_numpy(out)
    return DecodedImages(
        images=images if len(keep) == len(good) else images[keep],
        kept=[good[row] for row in keep],
        skipped=skipped,
    )


def _likely_size(open_file: Opener, names: Sequence[str], n: int = 32) -> tuple[int, int] | None:
    """The most common (height, width) among the headers of `n` files spread over `names`."""
    headers = [_attempt(open_file, name, _header) for name in names[:: max(1, len(names) // n)]]
    sizes = Counter(h[:2] for h in headers if not isinstance(h, str))
    return sizes.most_common(1)[0][0] if sizes else None


def _map(pool: ThreadPoolExecutor, items: Sequence[Any], fn: Callable[[Any], T]) -> list[T]:
    """fn over items, in chunks, in the pool's threads; pending chunks cancelled on an error."""
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    futures = [pool.submit(lambda chunk: [fn(item) for item in chunk], c) for c in chunks]
    try:
        return [result for future in futures for result in future.result()]
    finally:
        for future in futures:
            future.cancel()


def _attempt(open_file: Opener, name: str, read: Callable[[IO[bytes]], T]) -> T | str:
    """read(the file), or why the file cannot be read: the file is untrusted input."""
    try:
        with open_file(name) as file:
            return read(file)
    except UnidentifiedImageError:
        return f"not an image ({', '.join(FORMATS)})"
    except Exception as e:  # a malformed file can fail a decoder in any way; it is reported
        text = " ".join(str(e).split())
        return f"unreadable ({text or type(e).__name__})"


def _header(file: IO[bytes]) -> tuple[int, int, bool]:
    """(height, width, grey) of an image file, from its header alone."""
    with Image.open(file, formats=FORMATS) as img:
        return _size_and_mode(img)


def _size_and_mode(img: Image.Image) -> tuple[int, int, bool]:
    """(height, width, grey) of an opened image once upright; too many pixels is an error."""
    width, height = img.size
    if img.format == "JPEG" and img.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
        width, height = height, width
    if width * height > MAX_PIXELS:
        raise DataError(f"{width}x{height} pixels is over the limit of {MAX_PIXELS:,}")
    return height, width, img.mode in GREY_MODES


def _decode(
    file: IO[bytes], size: tuple[int, int] | None, mode: str | None
) -> tuple[tuple[int, int, bool], np.ndarray | None]:
    """(height, width, grey) of an image, and its pixels (C, H, W) when it is of `size`.

    `mode` is "L" or "RGB", or None for the image's own: grey or colour.
    """
    with Image.open(file, formats=FORMATS) as img:
        header = _size_and_mode(img)
        if header[:2] != size:
            return header, None
        img.load()
        return header, _pixels(img, mode or ("L" if header[2] else "RGB"), header[:2])


def _decode_to(file: IO[bytes], size: tuple[int, int], mode: str) -> np.ndarray:
    """An image's pixels (C, H, W) in `mode` ("L" or "RGB"), brought to `size`."""
    with Image.open(file, formats=FORMATS) as img:
        _size_and_mode(img)
        side = max(size)
        img.draft(img.mode, (side, side))  # JPEG: decode at 1/2, 1/4, 1/8 if that still covers
        img.load()
        return _pixels(img, mode, size)


def _pixels(img: Image.Image, mode: str, size: tuple[int, int]) -> np.ndarray:
    """A loaded image upright, opaque, in `mode`, scaled to cover `size` and centre-cropped."""
    if img.format == "JPEG":
        ImageOps.exif_transpose(img, in_place=True)
    img = _opaque_8bit(img)
    if img.mode != mode:
        img = img.convert(mode)
    height, width = size
    if img.size != (width, height):
        img = ImageOps.fit(img, (width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(img)
    return pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)
