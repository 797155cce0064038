"""A user's image file (PNG or JPEG) brought to the input a trained model expects.

Used by `cnnlab predict CHECKPOINT IMAGE...`. Digit models get the image in the
form the MNIST digits were made (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-
based learning applied to document recognition"; http://yann.lecun.com/exdb/mnist/):
the digit's bounding box size-normalised to fit a 20x20 box preserving the aspect
ratio, anti-aliased, and centred by its centre of mass in a 28x28 field, as white
ink on black. Other models get the image resized and centre-cropped.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import DataError

MAX_PIXELS = 64_000_000
"""The largest image (width x height) opened; bigger ones are refused as possible bombs."""

FORMATS = ("PNG", "JPEG")
EXPECTED = "expected a PNG or JPEG image"

MNIST_FIELD = 28
MNIST_BOX = 20
MIN_CONTRAST = 32.0
"""Below this grey-level difference from the background an image counts as blank."""
INK_FRACTION = 0.2
"""Ink fainter than this fraction of the darkest stroke is paper noise, not digit."""


def load_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a PNG or JPEG file as an upright, opaque 8-bit "L" or "RGB" image.

    EXIF orientation is applied, transparency is composited onto white, and 16-bit
    grey is scaled to 8 bits. Anything unreadable raises a one-line DataError.
    """
    path = Path(path)
    with open_regular_file(path, EXPECTED) as file:
        if os.fstat(file.fileno()).st_size == 0:
            raise DataError(f"{path}: file is empty; {EXPECTED}")
        return _opaque_8bit(_decode(file, path, max_pixels))


def open_regular_file(path: Path, expected: str) -> BinaryIO:
    """`path` opened for reading, or a one-line DataError when it is missing, unreadable or
    not a regular file (a named pipe would block the reader forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe opens at once, then is refused
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; {expected}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}; {expected}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "is a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise DataError(f"{path}: {kind}; {expected}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _decode(file: BinaryIO, path: Path, max_pixels: int) -> Image.Image:
    """The upright image in `file`, refusing bombs, other formats and corrupt data."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file, formats=FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise DataError(
                        f"{path}: image of {width}x{height} pixels exceeds the limit of "
                        f"{max_pixels} pixels; {EXPECTED} of a sensible size"
                    )
                img.load()
                upright = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"{path}: refused as a possible decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow recognises; {EXPECTED}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise DataError(f"{path}: truncated or corrupt image ({err}); {EXPECTED}") from None
    return upright


def _opaque_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer grey to 8 bits and composite transparency onto white."""
    if img.mode.startswith("I"):
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8))
    grey = img.mode in ("1", "L", "LA")
    if img.mode in ("LA", "RGBA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return img.convert("L" if grey else "RGB")


def to_mnist_digit(img: Image.Image, name: str = "image") -> torch.Tensor:
    """The digit in `img` as MNIST made its digits: uint8 (1, 28, 28), white ink on black.

    Following LeCun et al. 1998 / the MNIST page: polarity is taken from the median of
    the image border (a light border means dark ink, which is inverted); the background
    level is subtracted and faint noise below INK_FRACTION of the darkest ink dropped;
    the ink's bounding box is resized (anti-aliased) so its longer side is 20, then
    placed in 28x28 with its centre of mass at (14, 14), shifted by whole pixels and
    kept inside the field; contrast is stretched so the strongest ink is 255. `name`
    names the image in the error raised when it is blank.
    """
    ink = np.asarray(img.convert("L"), dtype=np.float32)  # grey, made ink in place
    border = np.concatenate([ink[0], ink[-1], ink[1:-1, 0], ink[1:-1, -1]])
    background = float(np.median(border))
    if background > 127.5:  # light paper, dark ink
        np.subtract(background, ink, out=ink)
    else:
        ink -= background
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise DataError(f"{name} contains no digit: the image is blank")
    ink -= INK_FRACTION * peak
    np.clip(ink, 0.0, None, out=ink)

    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = MNIST_BOX / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    digit = np.asarray(Image.fromarray(crop).resize(new_size, resample), dtype=np.float64)

    top = _centring_offset(digit.sum(axis=1), MNIST_FIELD)
    left = _centring_offset(digit.sum(axis=0), MNIST_FIELD)
    field = np.zeros((MNIST_FIELD, MNIST_FIELD))
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    field *= 255.0 / field.max()
    return torch.from_numpy(np.rint(field).astype(np.uint8)).unsqueeze(0)


def _centring_offset(profile: np.ndarray, field: int) -> int:
    """Where to put a strip with this mass profile so its centre of mass lands mid-field."""
    centre = float((profile * np.arange(profile.size)).sum() / profile.sum())
    return int(np.clip(round(field / 2 - centre), 0, field - profile.size))


def to_model_input(
    img: Image.Image,
    channels: int,
    size: tuple[int, int],
    mnist_style: bool,
    name: str = "image",
) -> torch.Tensor:
    """`img` as a uint8 (channels, H, W) tensor for a model trained on (H, W) = `size` images.

    With `mnist_style` (digit models) the image becomes an MNIST-style 28x28 digit,
    replicated over `channels`; any padding the model needs is its preprocessing's job.
    Otherwise it is converted to grey or RGB, resized so it covers `size` and centre-cropped.
    """
    if channels not in (1, 3):
        raise DataError(f"a model input has 1 or 3 channels, got {channels}")
    height, width = size
    if mnist_style:
        if (height, width) != (MNIST_FIELD, MNIST_FIELD):
            raise DataError(f"an MNIST-style digit input is 28x28, got {height}x{width}")
        return to_mnist_digit(img, name).repeat(channels, 1, 1)
    if height < 1 or width < 1:
        raise DataError(f"a model input size must be positive, got {height}x{width}")
    converted = img.convert("L" if channels == 1 else "RGB")
    fitted = ImageOps.fit(converted, (width, height), method=Image.Resampling.BILINEAR)
    pixels = np.asarray(fitted, dtype=np.uint8).reshape(height, width, channels)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def load_model_input(
    path: str | os.PathLike[str], channels: int, size: tuple[int, int], mnist_style: bool
) -> torch.Tensor:
    """`load_image` then `to_model_input`: the file at `path` as a uint8 (C, H, W) tensor."""
    return to_model_input(load_image(path), channels, size, mnist_style, name=str(path))
