"""Checkpoints that rebuild their own model, are safe to open and are verified before use.

A checkpoint is one safetensors file: the weights, plus JSON metadata under the
key "cnnlab" naming the architecture and its arguments, the preprocessing, the
class names and the metrics, which is all `eval`, `predict` and the viewers
need. Nothing is ever unpickled: safetensors holds only tensors and strings.

Every file cnnlab writes this way (checkpoints, and the training state of
cnnlab.training.training_state) also carries under "cnnlab_sha256" a SHA-256 of its
content: each tensor's name, dtype, shape and bytes and every other metadata entry.
It is checked before anything is used, so a flipped bit or a cut file is refused
(safetensors itself checks only that the header and the offsets hang together).
Files of format 1, written before the checksum, are refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from cnnlab.atomic_file import write_bytes_atomically
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models.classifier import Classifier
from cnnlab.registry import create_model

FORMAT_VERSION = 2  # 2: with a SHA-256 of the content; 1 (before it) is refused
METADATA_KEY = "cnnlab"
DIGEST_KEY = "cnnlab_sha256"


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

    def _check_types(self) -> None:
        """A ValueError naming the first field whose JSON value has the wrong type."""
        for name, kind in _FIELD_TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{name} {value!r}: expected {kind.__name__}")
        if len(self.image_shape) != 3 or not all(isinstance(n, int) for n in self.image_shape):
            raise ValueError(f"image_shape {self.image_shape!r}: expected (C, H, W)")

    @classmethod
    def from_json(cls, text: str, source: Path) -> CheckpointMeta:
        try:
            d = json.loads(text)
            if d.pop("format_version") != FORMAT_VERSION:
                raise ValueError("unsupported format version")
            d["preprocessing"] = Preprocessing.from_dict(d["preprocessing"])
            d["image_shape"] = tuple(d["image_shape"])
            meta = cls(**d)
            meta._check_types()
            return meta
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{source}: its cnnlab metadata is unreadable ({e})") from None


_FIELD_TYPES: dict[str, type] = {
    "model": str, "num_classes": int, "in_chans": int, "classes": list, "image_shape": tuple,
    "model_args": dict, "dataset": str, "data_source": str, "digits": bool, "metrics": dict,
    "epoch": int,
}  # fmt: skip


def save_checkpoint(path: str | Path, model: Classifier, meta: CheckpointMeta) -> None:
    """Write weights and metadata atomically to `path` (a .safetensors file)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_verified(path, tensors, {METADATA_KEY: meta.to_json()})


def content_sha256(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """The SHA-256 of what a safetensors file holds: every tensor's name, dtype, shape and
    bytes (by name), then every metadata entry but the digest itself."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        raw = tensor.reshape(-1).view(torch.uint8).numpy()
        header = json.dumps([name, str(tensor.dtype), list(tensor.shape), raw.nbytes])
        digest.update(header.encode())
        digest.update(raw)
    rest = {k: v for k, v in metadata.items() if k != DIGEST_KEY}
    digest.update(json.dumps(rest, sort_keys=True).encode())
    return digest.hexdigest()


def write_verified(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Save tensors and string metadata as safetensors with their SHA-256, atomically; a
    failed write is a CheckpointError and leaves the previous file as it was."""
    path = Path(path)
    data = save(tensors, metadata={**metadata, DIGEST_KEY: content_sha256(tensors, metadata)})
    try:
        write_bytes_atomically(path, data)
    except OSError as e:
        raise CheckpointError(
            f"{path}: not saved ({e.strerror or e}); the previous file there, if any, is kept"
        ) from None


def read_verified(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a file `write_verified` wrote, once its SHA-256 matches.

    A file without a digest is returned with none in its metadata: its caller names the
    older format it expected.
    """
    _check_not_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    digest = metadata.get(DIGEST_KEY)
    if digest is not None and digest != content_sha256(tensors, metadata):
        raise CheckpointError(
            f"{path}: corrupted: its content does not match its SHA-256 (a changed bit or a "
            "cut); not loaded"
        )
    return tensors, metadata


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
    tensors, metadata = read_verified(path)
    meta_text = metadata.get(METADATA_KEY)
    if meta_text is None:
        raise CheckpointError(f"{path}: a safetensors file without cnnlab metadata")
    if DIGEST_KEY not in metadata:
        raise CheckpointError(
            f"{path}: a checkpoint without a SHA-256 (format 1, from an older cnnlab), so "
            f"it cannot be verified: expected format {FORMAT_VERSION}; train or import it again"
        )
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
