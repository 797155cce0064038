"""Checkpoints that rebuild their own model and are safe to open.

A checkpoint is one safetensors file: the weights, plus JSON metadata under the
key "cnnlab" naming the architecture and its arguments, the preprocessing, the
class names and the metrics, which is all `eval`, `predict` and the viewers
need. Nothing is ever unpickled: safetensors holds only tensors, and the
training state beside it (`*.state.pt`, for `--resume`) is read with
`torch.load(weights_only=True)`, which refuses arbitrary objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cnnlab.atomic_file import write_atomically
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models.classifier import Classifier
from cnnlab.registry import create_model

FORMAT_VERSION = 1
METADATA_KEY = "cnnlab"


@dataclass
class CheckpointMeta:
    """Everything needed to rebuild and use a trained model, besides its weights."""

    model: str
    num_classes: int
    in_chans: int
    preprocessing: Preprocessing
    classes: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W) of a dataset image, before preprocessing
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""  # what --data named: mnist, cifar10, a folder
    data_source: str = ""  # the files read (ImageDataset.source): cifar10 or cifar10-jpeg, ...
    digits: bool = False  # trained on MNIST-style digits: predict centres digits the same way
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0

    def to_json(self) -> str:
        d = dict(self.__dict__, preprocessing=self.preprocessing.to_dict())
        return json.dumps({"format_version": FORMAT_VERSION, **d}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path) -> CheckpointMeta:
        try:
            d = json.loads(text)
            if d.pop("format_version") != FORMAT_VERSION:
                raise ValueError("unsupported format version")
            d["preprocessing"] = Preprocessing.from_dict(d["preprocessing"])
            d["image_shape"] = tuple(d["image_shape"])
            return cls(**d)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{source}: its cnnlab metadata is unreadable ({e})") from None


def save_checkpoint(path: str | Path, model: Classifier, meta: CheckpointMeta) -> None:
    """Write weights and metadata atomically to `path` (a .safetensors file)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: meta.to_json()}
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its best checkpoint, else its last)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise CheckpointError(f"{path}: a directory with no checkpoints/best.safetensors in it")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    return path


def _check_not_pickle(path: Path) -> None:
    """Refuse a pickle (torch.save's zip, or a bare pickle) before anything parses it.

    A safetensors file starts with its header's length (8 bytes, little-endian) and the
    header's JSON; that length may well begin with the byte 0x80 that also opens a pickle,
    so the shape of the header decides, not the first byte.
    """
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        raise CheckpointError(f"{path}: {len(head)} bytes, too short for a safetensors file")
    header_length = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and header_length <= path.stat().st_size - 8:
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path}: a pickle/torch.save file, refused: it could run code when opened; "
            "cnnlab checkpoints are .safetensors files"
        )


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The weights and metadata of a checkpoint, validated but not yet in a model."""
    path = resolve_checkpoint_path(path)
    _check_not_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_text = (f.metadata() or {}).get(METADATA_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if meta_text is None:
        raise CheckpointError(f"{path}: a safetensors file without cnnlab metadata")
    return tensors, CheckpointMeta.from_json(meta_text, path)


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Classifier, CheckpointMeta]:
    """Rebuild the model a checkpoint describes and load its weights (in eval mode)."""
    tensors, meta = read_checkpoint(path)
    try:
        model = create_model(
            meta.model, num_classes=meta.num_classes, in_chans=meta.in_chans, **meta.model_args
        )
    except CnnlabError as e:
        raise CheckpointError(f"{path}: cannot rebuild its model: {e}") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{path}: weights do not fit {meta.model}: {detail}") from None
    return model.to(device).eval(), meta


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Optimiser, schedule, RNG and progress, for `--resume` (tensors and plain data only)."""
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable training state ({type(e).__name__})") from None
