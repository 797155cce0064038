"""Checkpoints: a round trip rebuilds the model; unsafe, corrupted or broken files are
refused; a failed save keeps the previous checkpoint."""

from __future__ import annotations

import errno
import json
import os
import re
import stat

import pytest
import torch
from safetensors.torch import save_file

from cnnlab import create_model
from cnnlab.checkpoint import CheckpointMeta, load_checkpoint, read_checkpoint, save_checkpoint
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CheckpointError


def _meta(**kw) -> CheckpointMeta:
    base = dict(
        model="lenet5_modern",
        num_classes=10,
        in_chans=1,
        preprocessing=Preprocessing(pad_to=32),
        classes=[str(i) for i in range(10)],
        image_shape=(1, 28, 28),
        model_args={"dropout": 0.2},
        dataset="mnist",
        digits=True,
        metrics={"test_top1_error": 0.01},
    )
    base.update(kw)
    return CheckpointMeta(**base)


def test_round_trip_rebuilds_the_same_model_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet5_modern", dropout=0.2).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, _meta())
    loaded, meta = load_checkpoint(path)
    x = torch.randn(4, 1, 32, 32)
    assert torch.equal(loaded(x), model(x))
    assert meta == _meta() and loaded.cfg.dropout == 0.2


def test_a_pickle_file_is_refused_without_being_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    torch.save({"x": Payload()}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_header_length_that_starts_with_the_pickle_byte_is_still_a_checkpoint(tmp_path):
    """The first byte of a safetensors file is its header length's lowest byte: 0x80 for a
    header of 0x..80 bytes, the byte a pickle starts with too."""
    model = create_model("lenet5")
    path = tmp_path / "m.safetensors"
    for extra in range(300):  # lengthen the metadata until the header length ends in 0x80
        meta = _meta(model="lenet5", model_args={}, data_source="x" * extra)
        save_checkpoint(path, model, meta)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    _, loaded = load_checkpoint(path)
    assert loaded == meta


def test_truncated_and_foreign_files_are_refused(tmp_path):
    model = create_model("lenet5")
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, _meta(model="lenet5", model_args={}))
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape("cut.safetensors")):
        load_checkpoint(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, create_model("lenet5"), _meta(model="lenet5_1998", model_args={}))
    with pytest.raises(CheckpointError, match="do not fit lenet5_1998"):
        load_checkpoint(path)


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, create_model("lenet5"), _meta(model="lenet5", model_args={}))
    save_checkpoint(path, create_model("lenet5"), _meta(model="lenet5", model_args={}))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    mask = os.umask(0o022)
    try:
        save_checkpoint(path, create_model("lenet5"), _meta(model="lenet5", model_args={}))
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # a new file's mode, not mkstemp's 0600


def _tiny(tmp_path):
    """A checkpoint of a few dozen bytes of weights: small enough to flip every bit of."""
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, torch.nn.Linear(3, 2), _meta(model="lenet5", model_args={}))
    return path


def test_every_single_bit_flip_and_every_truncation_is_refused(tmp_path):
    path = _tiny(tmp_path)
    data = path.read_bytes()
    read_checkpoint(path)  # the intact file reads
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data)
    fd = os.open(bad, os.O_RDWR)
    try:
        for bit in range(len(data) * 8):  # flip one bit in place, read, flip it back
            byte = data[bit // 8]
            os.pwrite(fd, bytes([byte ^ 1 << bit % 8]), bit // 8)
            with pytest.raises(CheckpointError, match=re.escape(str(bad))):
                read_checkpoint(bad)
            os.pwrite(fd, bytes([byte]), bit // 8)
        for length in reversed(range(len(data))):
            os.ftruncate(fd, length)
            with pytest.raises(CheckpointError, match=re.escape(str(bad))):
                read_checkpoint(bad)
    finally:
        os.close(fd)


def test_a_checkpoint_of_format_1_without_a_checksum_is_refused_clearly(tmp_path):
    model = create_model("lenet5")
    meta = json.loads(_meta(model="lenet5", model_args={}).to_json())
    meta["format_version"] = 1
    path = tmp_path / "old.safetensors"
    save_file(model.state_dict(), str(path), metadata={"cnnlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=r"old\.safetensors: .*format 1.*train or import"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("where", "code"),
    [("tempfile.mkstemp", errno.EROFS), ("os.fsync", errno.ENOSPC)],
    ids=["read-only", "disk-full"],
)
def test_a_failed_save_is_one_clear_error_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, where, code
):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, create_model("lenet5"), _meta(model="lenet5", model_args={}))
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(where, fail)  # a read-only directory (root writes into a chmod 555
    # one), a full disk (seen at fsync, after the data went to the page cache)
    torch.manual_seed(1)
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(path, create_model("lenet5"), _meta(model="lenet5", model_args={}))
    monkeypatch.undo()
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and os.strerror(code) in message
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left
    load_checkpoint(path)
