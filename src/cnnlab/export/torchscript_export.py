"""TorchScript export: a traced `forward` in evaluation mode, metadata as the extra file
`cnnlab.json`, loadable by `torch.jit.load` in Python and `torch::jit::load` in C++ libtorch.

Tracing records the shape arithmetic of the forward pass (ShuffleNet's channel shuffle
reshapes by the input's batch size), so any batch size runs. torch 2.13 marks TorchScript
deprecated (and unsupported from Python 3.14) but keeps it; its warnings are silenced here
and the check (export/check.py) vouches for the file. GoogLeNet's auxiliary classifiers stay
in the archive as unused submodules: `forward` never calls them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.export.metadata import EXTRA_FILE

RUNTIME = "torch.jit"


def write_torchscript(
    model: nn.Module, input_shape: tuple[int, int, int], metadata: dict[str, Any], path: Path
) -> None:
    """Trace `model` (in eval mode) on inputs (N, *input_shape) and save it to `path`."""
    example = torch.zeros(2, *input_shape)
    extra = {EXTRA_FILE: json.dumps(metadata, sort_keys=True)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files=extra)


def run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    """The logits the TorchScript file at `path` computes for `x`, loaded as a user would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(x.detach().cpu().float())
