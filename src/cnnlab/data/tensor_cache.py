"""Decoded datasets cached as safetensors files, so that their images are decoded once.

A cache file is named after its source and a digest of a key (what identifies the source, such
as its path, size and modification time, and the options that shape the tensors); it holds
named tensors and one JSON object, and is written atomically. A file that cannot be read counts
as absent and one that cannot be written is a warning: a cache is never the reason a load fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cnnlab.atomic_file import write_atomically

log = logging.getLogger(__name__)

CACHE_ENV = "CNNLAB_CACHE"
_META_KEY = "cnnlab"


def default_cache_dir() -> Path:
    """$CNNLAB_CACHE, else $XDG_CACHE_HOME/cnnlab/decoded, else ~/.cache/cnnlab/decoded."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "cnnlab" / "decoded"


def cache_path(name: str, key: Any, cache_dir: str | Path | None = None) -> Path:
    """The cache file for source `name` and `key` (anything JSON can write)."""
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"{name}-{digest}.safetensors"


def load_cached(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, JSON object) saved at `path`, or None when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            return {key: f.get_tensor(key) for key in f.keys()}, meta  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        log.warning("%s: unreadable cache file (%s); decoding again", path, e)
        return None


def save_cached(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save tensors and a JSON object at `path` atomically; a failure is only logged."""
    metadata = {_META_KEY: json.dumps(meta)}
    try:
        write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    except OSError as e:
        log.warning("cannot cache decoded images in %s (%s)", path, e.strerror or e)
