"""IDX reader and writer: round trips, the byte layout, and every kind of corruption."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from cnnlab.data.idx import read_idx, write_idx
from cnnlab.errors import DataError

DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64]


def _sample(dtype: torch.dtype) -> torch.Tensor:
    """A (2, 3, 4) tensor spanning the dtype's extremes and negative values where it has them."""
    if dtype.is_floating_point:
        values = torch.linspace(-1e6, 1e6, 24, dtype=dtype)
        values[0], values[1] = torch.finfo(dtype).min, torch.finfo(dtype).tiny
    else:
        info = torch.iinfo(dtype)
        values = torch.linspace(info.min, info.max, 24, dtype=torch.float64).to(dtype)
        values[0], values[-1] = info.min, info.max
    return values.reshape(2, 3, 4)


def _idx(code: int, dims: tuple[int, ...], data: bytes) -> bytes:
    """Hand-built IDX bytes, independent of write_idx."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_round_trip(tmp_path: Path, dtype: torch.dtype, compress: bool) -> None:
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    tensor = _sample(dtype)
    write_idx(path, tensor)
    assert path.read_bytes().startswith(b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == dtype
    assert back.shape == tensor.shape
    assert torch.equal(back, tensor)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_byte_layout_is_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, torch.tensor([[1, -2]], dtype=torch.int16))
    assert path.read_bytes() == _idx(0x0B, (1, 2), b"\x00\x01\xff\xfe")
    assert read_idx(path).tolist() == [[1, -2]]


def test_uint8_read_is_native_and_writable(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(_idx(0x08, (3,), bytes([5, 0, 255])))
    labels = read_idx(path)
    assert labels.dtype == torch.uint8 and labels.tolist() == [5, 0, 255]
    labels[0] = 1  # owns writable memory


def test_gzip_detected_by_magic_not_name(tmp_path: Path) -> None:
    tensor = _sample(torch.int32)
    gz_named_plain, plain_named_gz = tmp_path / "a", tmp_path / "b.gz"
    write_idx(gz_named_plain, tensor, compress=True)
    write_idx(plain_named_gz, tensor, compress=False)
    assert gz_named_plain.read_bytes()[:2] == b"\x1f\x8b"
    assert plain_named_gz.read_bytes()[:2] == b"\x00\x00"
    assert torch.equal(read_idx(gz_named_plain), tensor)
    assert torch.equal(read_idx(plain_named_gz), tensor)


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    write_idx(path, torch.zeros(5, dtype=torch.uint8))
    write_idx(path, torch.ones(2, 2, dtype=torch.float32))
    assert torch.equal(read_idx(path), torch.ones(2, 2))


@pytest.mark.parametrize(
    "tensor", [torch.zeros(3, dtype=torch.int64), torch.tensor(1.0), torch.zeros(2, dtype=bool)]
)
def test_write_rejects_what_idx_cannot_store(tmp_path: Path, tensor: torch.Tensor) -> None:
    with pytest.raises(DataError, match=r"out\.idx"):
        write_idx(tmp_path / "out.idx", tensor)
    assert list(tmp_path.iterdir()) == []


_VALID = _idx(0x08, (2, 3), bytes(range(6)))
_GZ = gzip.compress(_VALID * 100, mtime=0)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"\x00\x00", "truncated"),
        (b"\x01\x00" + _VALID[2:], "not an IDX file"),
        (b"\x00\x07" + _VALID[2:], "not an IDX file"),
        (_idx(0x0A, (2, 3), bytes(6)), "unknown IDX type code 0x0A"),
        (_idx(0x08, (), b""), "0 dimensions"),
        (_VALID[:6], "truncated: header declares 2 dimensions"),
        (_VALID[:-1], "truncated: header says 6 data bytes"),
        (_VALID + b"\x00", "1 trailing bytes"),
        (_idx(0x08, (10, 28, 28), bytes(5 * 28 * 28)), "header says 7,840 data bytes"),
        (_idx(0x08, (2, 2), bytes(6)), "trailing bytes"),
        (_idx(0x0C, (2,), bytes(6)), "header says 8 data bytes for shape (2,), found 6"),
        (gzip.compress(_VALID[:-2]), "truncated"),
        (gzip.compress(b""), "empty file"),
        (_GZ[: len(_GZ) // 2], "corrupt gzip stream"),
        (_GZ[:20] + bytes(b ^ 0xFF for b in _GZ[20:30]) + _GZ[30:], "corrupt gzip stream"),
        (_GZ[:-8] + b"\x00" * 8, "corrupt gzip stream"),
    ],
    ids=[
        "empty",
        "short-header",
        "bad-magic-first",
        "bad-magic-second",
        "unknown-type",
        "zero-dims",
        "truncated-dims",
        "truncated-data",
        "trailing",
        "dims-mismatch-short",
        "dims-mismatch-long",
        "int32-short",
        "gzip-truncated-data",
        "gzip-empty",
        "gzip-cut",
        "gzip-garbled",
        "gzip-bad-crc",
    ],
)
def test_corruption_raises_one_line_naming_the_file(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert message.startswith("train-images-idx3-ubyte.gz: ")
    assert expected in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.idx: no such file"):
        read_idx(tmp_path / "nothere.idx")
