"""The training state file: every kind of value comes back exactly, nothing is unpickled,
and a changed bit or a cut file is refused before anything is decoded."""

from __future__ import annotations

import math
import pickle
import random
import re

import pytest
import torch

from cnnlab.errors import CheckpointError
from cnnlab.training.training_state import load_training_state, save_training_state


def _state() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "epoch": 3,
        "best_error": math.inf,
        "nothing": None,
        "flag": True,
        "name": "sgd",
        "rng": {"torch": torch.get_rng_state(), "cuda": []},
        "tensors": [
            torch.randn(3, 4, generator=generator),
            torch.randn(2, dtype=torch.float64, generator=generator),
            torch.randn(5, generator=generator).to(torch.bfloat16),
            torch.tensor(7.0),  # 0-dim, as Adam's step
            torch.zeros(0, 3),
            torch.tensor([True, False]),
            torch.arange(6, dtype=torch.int64).view(2, 3).t(),  # not contiguous
        ],
        # an optimiser's state: keyed by parameter index; Adam's betas are a tuple
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.ones(2)}, 1: {"step": torch.tensor(4.0)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}],
        },
        "$odd": {"$tensor": "not a reference"},
        "history": [{"epoch": 1, "val_top1_error": None, "lr": 0.012345678901234567}],
    }


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def test_every_kind_of_value_comes_back_exactly(tmp_path):
    path = tmp_path / "last.state.safetensors"
    save_training_state(path, _state())
    assert _same(_state(), load_training_state(path))


def test_nothing_is_unpickled(tmp_path, monkeypatch):
    path = tmp_path / "last.state.safetensors"
    save_training_state(path, _state())

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_training_state(path)["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle's 0x80


def test_a_changed_bit_or_a_cut_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "last.state.safetensors"
    save_training_state(path, _state())
    data = path.read_bytes()
    rng = random.Random(0)
    bad = tmp_path / "bad.state.safetensors"
    positions = sorted(rng.sample(range(len(data) * 8), 300)) + list(range(64))
    for bit in positions:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        bad.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=re.escape(str(bad))):
            load_training_state(bad)
    for length in (0, 7, 8, 100, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:length])
        with pytest.raises(CheckpointError, match=re.escape(str(bad))):
            load_training_state(bad)


def test_a_missing_state_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no training state to resume from"):
        load_training_state(tmp_path / "none.safetensors")
