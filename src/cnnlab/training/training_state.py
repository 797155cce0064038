"""The state a run resumes from, in one verified safetensors file: no pickle anywhere.

The state is a nest of dicts, lists, tuples, numbers, strings and tensors (the model's
weights and buffers, the optimiser's moments, every RNG state, the epoch's running
metrics). The tensors are stored as tensors; the rest becomes JSON in the file's
metadata, each tensor replaced by a reference to it, and tuples and dicts whose keys
are not strings (an optimiser's state, by parameter index) tagged so that they come back
as they were. The file carries a SHA-256 of its content (cnnlab.checkpoint.write_verified),
checked before anything is decoded: a flipped bit or a truncated file is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cnnlab.checkpoint import DIGEST_KEY, read_verified, write_verified
from cnnlab.errors import CheckpointError

STATE_KEY = "cnnlab_training_state"
STATE_VERSION = 1
_TENSOR, _TUPLE, _ITEMS = "$tensor", "$tuple", "$items"


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically, with its SHA-256."""
    tensors: dict[str, torch.Tensor] = {}
    document = {"version": STATE_VERSION, "state": _encode(state, tensors)}
    write_verified(path, tensors, {STATE_KEY: json.dumps(document)})


def load_training_state(path: str | Path) -> dict[str, Any]:
    """The state `save_training_state` wrote, verified, with its tensors on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from")
    tensors, metadata = read_verified(path)
    text = metadata.get(STATE_KEY)
    if text is None or DIGEST_KEY not in metadata:
        raise CheckpointError(f"{path}: not a cnnlab training state (or one without a SHA-256)")
    try:
        document = json.loads(text)
        if document["version"] != STATE_VERSION:
            raise ValueError(f"version {document['version']}, expected {STATE_VERSION}")
        return _decode(document["state"], tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable training state ({e})") from None


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = value.detach().cpu().contiguous()
        return {_TENSOR: name}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {_ITEMS: [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a training state holds no {type(value).__name__}")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and _TENSOR in value:
        return tensors[value[_TENSOR]]
    if len(value) == 1 and _TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    if len(value) == 1 and _ITEMS in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
    return {k: _decode(v, tensors) for k, v in value.items()}
