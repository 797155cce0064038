"""Property-based tests (hypothesis) of the IDX format, the convolution size arithmetic and the
loader's epochs (issue 9): each law is checked on a few hundred generated cases, not on a few
hand-picked ones. The whole file takes about 30 s on one core.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.idx import decode_idx, read_idx, write_idx
from cnnlab.data.loader import BatchLoader, batch_share
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError, DataError
from cnnlab.layers.conv_arithmetic import conv_output_size, same_padding

# no example database written into the work tree; no timing limit on a shared machine
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
IDX_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64]


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    """Any tensor IDX can hold: each of its six types, 1 to 4 dimensions (some of size 0),
    and any bit pattern (NaNs, infinities and negative zeros included)."""
    dtype = draw(st.sampled_from(IDX_DTYPES))
    shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    raw = draw(st.binary(min_size=size, max_size=size))
    if size == 0:  # torch.frombuffer refuses an empty buffer
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()


@PROPERTY
@given(tensor=tensors(), compress=st.booleans())
def test_idx_round_trip_keeps_every_bit(tmp_path: Path, tensor: torch.Tensor, compress: bool):
    path = tmp_path / "x.idx"
    write_idx(path, tensor, compress=compress)
    back = read_idx(path)
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert _bits(back) == _bits(tensor)


@PROPERTY
@given(tensor=tensors(), data=st.data())
def test_idx_cut_anywhere_is_refused(tensor: torch.Tensor, data: st.DataObject):
    content = _idx_bytes(tensor)
    cut = data.draw(st.integers(0, len(content) - 1), label="cut")
    with pytest.raises(DataError, match=r"x\.idx"):
        decode_idx(content[:cut], "x.idx")


near_idx = st.builds(  # headers of any type code and a few small dimensions, data of any length
    lambda code, dims, data: (
        bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + data
    ),
    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]),
    st.lists(st.integers(0, 3), max_size=3),
    st.binary(max_size=64),
)


@PROPERTY
@given(content=st.binary(max_size=200) | near_idx)
def test_idx_decoder_on_any_bytes_gives_a_tensor_or_a_data_error(content: bytes):
    try:
        decoded = decode_idx(content, "x.idx")
    except DataError as e:
        assert str(e).startswith("x.idx: ") and "\n" not in str(e)
    else:  # then the bytes were a whole IDX file and say the same again
        assert _idx_bytes(decoded) == content


@PROPERTY
@given(content=st.binary(max_size=300))
def test_gzip_of_any_bytes_is_a_data_error_or_a_tensor(tmp_path: Path, content: bytes):
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b" + content)
    try:
        read_idx(path)
    except DataError as e:
        assert "x.gz" in str(e)


def _idx_bytes(tensor: torch.Tensor) -> bytes:
    codes = {torch.uint8: 8, torch.int8: 9, torch.int16: 11, torch.int32: 12}
    codes |= {torch.float32: 13, torch.float64: 14}
    header = bytes([0, 0, codes[tensor.dtype], tensor.dim()])
    header += b"".join(d.to_bytes(4, "big") for d in tensor.shape)
    big_endian = tensor.numpy().astype(tensor.numpy().dtype.newbyteorder(">"))
    return header + big_endian.tobytes()


def _torch_length(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int | None:
    """The output length PyTorch's conv1d gives, or None where PyTorch refuses the shapes."""
    x = torch.zeros(1, 1, size)
    w = torch.zeros(1, 1, kernel)
    try:
        return F.conv1d(x, w, stride=stride, padding=padding, dilation=dilation).shape[-1]
    except RuntimeError:
        return None


geometry = {
    "size": st.integers(1, 40),
    "kernel": st.integers(1, 12),
    "stride": st.integers(1, 6),
    "padding": st.integers(0, 6),
    "dilation": st.integers(1, 4),
}


@PROPERTY
@given(**geometry)
def test_conv_output_size_is_pytorchs(size, kernel, stride, padding, dilation):
    expected = _torch_length(size, kernel, stride, padding, dilation)
    if expected is None:  # the filter does not fit: both refuse
        with pytest.raises(CnnlabError, match="does not fit"):
            conv_output_size(size, kernel, stride, padding, dilation)
    else:
        assert conv_output_size(size, kernel, stride, padding, dilation) == expected


@PROPERTY
@given(**geometry)
def test_strict_refuses_exactly_when_inputs_are_left_over(size, kernel, stride, padding, dilation):
    expected = _torch_length(size, kernel, stride, padding, dilation)
    if expected is None:
        return
    used = (expected - 1) * stride + dilation * (kernel - 1) + 1  # inputs the last window reaches
    if used == size + 2 * padding:
        assert conv_output_size(size, kernel, stride, padding, dilation, strict=True) == expected
    else:
        with pytest.raises(CnnlabError, match="not an integer"):
            conv_output_size(size, kernel, stride, padding, dilation, strict=True)


@PROPERTY
@given(size=st.integers(1, 40), kernel=st.integers(1, 9), stride=st.integers(1, 5),
       dilation=st.integers(1, 3))  # fmt: skip
def test_same_padding_gives_ceil_of_size_over_stride(size, kernel, stride, dilation):
    before, after = same_padding(size, kernel, stride, dilation)
    x = F.pad(torch.zeros(1, 1, size), (before, after))
    out = F.conv1d(x, torch.zeros(1, 1, kernel), stride=stride, dilation=dilation)
    assert out.shape[-1] == math.ceil(size / stride)
    assert 0 <= after - before <= 1


def _dataset(n: int) -> ImageDataset:
    """n 1x1 images whose label is their own index."""
    return ImageDataset(
        torch.zeros(n, 1, 1, 1, dtype=torch.uint8),
        torch.arange(n),
        ("a", "b"),
        "ids",
    )


UNIT = Preprocessing(mode="unit", mean=(0.0,), std=(1.0,))


@PROPERTY
@given(n=st.integers(1, 300), batch=st.integers(1, 64), seed=st.integers(0, 2**31),
       epoch=st.integers(0, 50), shuffle=st.booleans())  # fmt: skip
def test_every_example_once_per_epoch(n, batch, seed, epoch, shuffle):
    loader = BatchLoader(_dataset(n), batch, UNIT, shuffle=shuffle, seed=seed)
    loader.set_epoch(epoch)
    batches = [labels.tolist() for _, labels in loader]
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert len(batches) == len(loader) == math.ceil(n / batch)
    assert all(len(b) == batch for b in batches[:-1]) and 1 <= len(batches[-1]) <= batch
    assert [len(b) for b in batches] == [loader.global_batch_length(i) for i in range(len(loader))]


@PROPERTY
@given(n=st.integers(1, 300), batch=st.integers(1, 64), seed=st.integers(0, 2**31))
def test_drop_last_visits_whole_batches_once(n, batch, seed):
    loader = BatchLoader(_dataset(n), batch, UNIT, shuffle=True, seed=seed, drop_last=True)
    seen = [i for _, labels in loader for i in labels.tolist()]
    assert len(seen) == len(set(seen)) == (n // batch) * batch


@PROPERTY
@given(n=st.integers(1, 200), batch=st.integers(1, 32), seed=st.integers(0, 2**31),
       world=st.integers(1, 5), epoch=st.integers(0, 9))  # fmt: skip
def test_process_shares_make_up_the_single_process_epoch(n, batch, seed, world, epoch):
    """Under torchrun process `rank` of `world` yields its contiguous share of every global
    batch (skipping empty shares): together they see each example once, as one process would."""
    single = BatchLoader(_dataset(n), batch, UNIT, shuffle=True, seed=seed)
    single.set_epoch(epoch)
    global_batches = [labels.tolist() for _, labels in single]
    seen = []
    for rank in range(world):
        loader = BatchLoader(
            _dataset(n), batch, UNIT, shuffle=True, seed=seed, rank=rank, world_size=world
        )
        loader.set_epoch(epoch)
        got = [labels.tolist() for _, labels in loader]
        shares = [b[batch_share(len(b), rank, world)] for b in global_batches]
        assert got == [share for share in shares if share]
        seen += [i for share in got for i in share]
    assert sorted(seen) == list(range(n))


def test_the_tests_idx_encoder_is_write_idxs(tmp_path: Path) -> None:
    """_idx_bytes, the encoder the properties above compare with, agrees with write_idx."""
    tensor = torch.arange(-6, 6, dtype=torch.int16).reshape(3, 4)
    write_idx(tmp_path / "x.gz", tensor)
    assert gzip.decompress((tmp_path / "x.gz").read_bytes()) == _idx_bytes(tensor)
