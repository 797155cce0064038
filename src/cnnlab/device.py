"""Choosing where to compute: CUDA when present and asked for, else the CPU."""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError(f"device {name!r} asked for, but this machine has no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise CnnlabError(f"device {name!r} is not supported: expected auto, cpu or cuda")
    return device
