"""A request's image bytes decoded in memory: PNG or JPEG only, pixels capped before decoding.

The format is taken from the bytes' signature (PNG: 89 50 4E 47 0D 0A 1A 0A, PNG spec
Section 5.2; JPEG: FF D8 FF, a start-of-image marker and the next marker's first byte),
never from a name or a path. Pillow's `Image.open` reads only the header, so the
width x height it reports is checked against `max_pixels` before a pixel is decoded
(a decompression bomb declares its size honestly; Pillow's own bomb check, raised as an
error here, catches the still larger ones). The result is brought to the form
`cnnlab.data.image_file.load_image` gives a file: upright, opaque, 8-bit L or RGB.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

from cnnlab.data.image_file import _opaque_8bit
from cnnlab.serve.http_error import HttpError

MAX_PIXELS = 4096 * 4096
"""The largest image (width x height) decoded by default: 16.8 megapixels."""

SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))
EXPECTED = "expected a PNG or JPEG image"


def sniff_format(data: bytes) -> str:
    """'PNG' or 'JPEG' from the first bytes; 415 for anything else."""
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    raise HttpError(415, f"the body begins with bytes {data[:8].hex(' ')}: {EXPECTED}")


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """PNG or JPEG bytes -> an upright, opaque 8-bit "L" or "RGB" image.

    400 for an empty body, an image over `max_pixels` (from its header) and a truncated
    or corrupt one; 415 for bytes that are not PNG or JPEG.
    """
    if not data:
        raise HttpError(400, f"the request body is empty: {EXPECTED}'s bytes")
    image_format = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=(image_format,)) as img:
                width, height = img.size  # from the header: nothing is decoded yet
                if width * height > max_pixels:
                    raise HttpError(
                        400,
                        f"a {width}x{height} image ({width * height} pixels) exceeds the "
                        f"limit of {max_pixels} pixels: {EXPECTED} of a sensible size",
                    )
                img.load()
                upright = ImageOps.exif_transpose(img)
            return _opaque_8bit(upright)
    except HttpError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise HttpError(400, f"refused as a possible decompression bomb ({err})") from None
    except Exception as err:  # Pillow's decoders raise many types on hostile bytes
        raise HttpError(
            400, f"truncated or corrupt {image_format} ({type(err).__name__}: {err})"
        ) from None
