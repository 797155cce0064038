"""Reader and writer for the IDX file format.

IDX is the format of the MNIST files (LeCun, Cortes & Burges, "THE MNIST
DATABASE of handwritten digits", section "FILE FORMATS FOR THE MNIST
DATABASE"): two zero bytes, a type code byte, a byte giving the number of
dimensions, one big-endian uint32 per dimension, then the data in C order
and big-endian byte order. Files may be gzip-compressed; compression is
detected from the gzip magic bytes, not from the file name.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.atomic_file import write_atomically
from cnnlab.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> (big-endian numpy dtype, torch dtype)
_TYPES: dict[int, tuple[np.dtype, torch.dtype]] = {
    0x08: (np.dtype(">u1"), torch.uint8),
    0x09: (np.dtype(">i1"), torch.int8),
    0x0B: (np.dtype(">i2"), torch.int16),
    0x0C: (np.dtype(">i4"), torch.int32),
    0x0D: (np.dtype(">f4"), torch.float32),
    0x0E: (np.dtype(">f8"), torch.float64),
}
_CODE_OF_TORCH = {torch_dtype: code for code, (_, torch_dtype) in _TYPES.items()}


def read_idx(path: str | Path) -> torch.Tensor:
    """The array stored in the IDX file at `path` (raw or gzip), in its native dtype.

    Raises DataError, with one line naming the file, for a missing or
    unreadable file, a corrupt gzip stream, a bad header or a data length
    that does not match the header exactly.
    """
    path = Path(path)
    return decode_idx(_read_uncompressed(path), path.name)


def decode_idx(content: bytes, name: str) -> torch.Tensor:
    """The array in the uncompressed IDX bytes `content`; `name` labels errors."""
    if not content:
        raise DataError(f"{name}: empty file")
    if len(content) < 4:
        raise DataError(f"{name}: truncated: {len(content)} bytes, too short for an IDX header")
    if content[0] != 0 or content[1] != 0:
        raise DataError(
            f"{name}: not an IDX file: starts with bytes {content[:2].hex()}, expected 0000"
        )
    code, ndim = content[2], content[3]
    if code not in _TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _TYPES)
        raise DataError(f"{name}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim < 1:
        raise DataError(f"{name}: IDX header has 0 dimensions, expected at least 1")
    header_len = 4 + 4 * ndim
    if len(content) < header_len:
        raise DataError(
            f"{name}: truncated: header declares {ndim} dimensions ({header_len} header bytes), "
            f"found {len(content):,} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", ndim, 4))
    np_dtype, _ = _TYPES[code]
    expected = math.prod(shape) * np_dtype.itemsize
    found = len(content) - header_len
    if found < expected:
        raise DataError(
            f"{name}: truncated: header says {expected:,} data bytes for shape {shape}, "
            f"found {found:,}"
        )
    if found > expected:
        raise DataError(
            f"{name}: {found - expected:,} trailing bytes after the {expected:,} data bytes "
            f"that the header declares for shape {shape}"
        )
    data = np.frombuffer(content, np_dtype, expected // np_dtype.itemsize, header_len)
    native = data.astype(np_dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(native.reshape(shape))


def write_idx(path: str | Path, tensor: torch.Tensor, compress: bool | None = None) -> None:
    """Write `tensor` to `path` as an IDX file, atomically.

    The file is gzip-compressed when `compress` is true, or when it is None
    and the path ends in ".gz". A temporary file in the same folder is
    written, synced and then renamed over `path`, so readers never see a
    partial file.
    """
    path = Path(path)
    code = _CODE_OF_TORCH.get(tensor.dtype)
    if code is None:
        supported = ", ".join(str(d) for d in _CODE_OF_TORCH)
        raise DataError(f"{path.name}: IDX cannot store {tensor.dtype} (supported: {supported})")
    if tensor.dim() < 1 or tensor.dim() > 255:
        raise DataError(f"{path.name}: IDX needs 1 to 255 dimensions, got {tensor.dim()}")
    if max(tensor.shape) >= 2**32:
        raise DataError(f"{path.name}: dimension {max(tensor.shape)} does not fit in uint32")
    np_dtype, _ = _TYPES[code]
    header = bytes([0, 0, code, tensor.dim()]) + np.asarray(tensor.shape, ">u4").tobytes()
    content = header + tensor.detach().cpu().contiguous().numpy().astype(np_dtype).tobytes()
    if compress if compress is not None else path.name.endswith(".gz"):
        content = gzip.compress(content, compresslevel=6, mtime=0)
    write_atomically(path, lambda tmp: tmp.write_bytes(content))


def _read_uncompressed(path: Path) -> bytes:
    """The bytes of the file at `path`, gunzipped when it starts with the gzip magic."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path.name}: no such file ({path})") from None
    except OSError as e:
        raise DataError(f"{path.name}: cannot read: {e.strerror or e}") from None
    if not content.startswith(GZIP_MAGIC):
        return content
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path.name}: corrupt gzip stream: {e}") from None
