"""Writing a model in an export format, checked before the file takes its name.

The file is written beside `out` under a temporary name, checked there (run by its own
runtime on a batch, against PyTorch), and renamed to `out` only when the check passes
(atomic_file.write_atomically): a failed check leaves no file, and an earlier `out` stays
as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.atomic_file import write_atomically
from cnnlab.export import onnx_export, torchscript_export
from cnnlab.export.check import DEFAULT_TOLERANCE, CheckFailed, CheckResult, check_outputs


@dataclass(frozen=True)
class ExportFormat:
    """How to write a format (model, (C, H, W), metadata, path, **options) and run it."""

    runtime: str
    write: Callable[..., None]
    run: Callable[[Path, torch.Tensor], torch.Tensor]


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(onnx_export.RUNTIME, onnx_export.write_onnx, onnx_export.run_onnx),
    "torchscript": ExportFormat(
        torchscript_export.RUNTIME,
        torchscript_export.write_torchscript,
        torchscript_export.run_torchscript,
    ),
}


def export_model(
    model: nn.Module,
    metadata: dict[str, Any],
    fmt: str,
    out: str | Path,
    *,
    check_batch: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    **options: Any,
) -> CheckResult | None:
    """Write `model` (put in eval mode) as `fmt` to `out`, for inputs (N, *input_shape) with
    `input_shape` from `metadata`; `options` go to the format's writer (ONNX: `opset`).

    With `check_batch` (preprocessed, (N, C, H, W)) the written file is run on it and its
    logits compared with PyTorch's (check.py); if they differ by more than `tolerance` and
    float32 rounding allow, CheckFailed is raised and nothing is written. Returns the check's result
    (None without a batch).
    """
    export_format = FORMATS[fmt]
    model.eval()
    shape = tuple(metadata["input_shape"])
    results: list[CheckResult] = []

    def write(tmp: Path) -> None:
        export_format.write(model, shape, metadata, tmp, **options)
        if check_batch is None:
            return
        exported = export_format.run(tmp, check_batch)
        result = check_outputs(model, check_batch, exported, export_format.runtime, tolerance)
        if not result.passed:
            raise CheckFailed(result)
        results.append(result)

    write_atomically(out, write)
    return results[0] if results else None
