"""Checking an exported model's logits against PyTorch's on the same batch.

The figure is the largest absolute difference of any logit. It passes at most the tolerance
(1e-5 by default, the issue's criterion), times the largest |logit| when that exceeds 1:
float32 carries about 7 significant digits, so logits in the tens or hundreds (LeNet-5's RBF
distances reach 190) differ in their fifth decimal between two correct implementations.

Even that is at float32's limit for some networks: PyTorch's own float32 logits can be
farther than it from the exact ones. Measured on 5 random images, GoogLeNet-small with
random weights: 2.0e-5 from the float64 logits at a largest |logit| of 1.8, and
onnxruntime's 1.2e-5, so the two differ by 3.1e-5. So a difference beyond the tolerance is
then measured against the same model run in float64: the file passes if its logits are at
most FLOAT32_FACTOR times as far from those as PyTorch's float32 logits are (rounding, not a
wrong graph; an operation misread, a batch size baked in or batch norm in training mode is
off by orders of magnitude more). Top-1 agreement is reported beside: what a user sees.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

DEFAULT_TOLERANCE = 1e-5
FLOAT32_FACTOR = 4.0


@dataclass(frozen=True)
class CheckResult:
    """The comparison of one batch: `examples` images, PyTorch's logits against the file's."""

    runtime: str  # what ran the exported file: onnxruntime, torch.jit
    examples: int
    max_abs_difference: float  # inf when the shapes differ, nan when an output is nan
    max_abs_logit: float  # PyTorch's largest |logit|: the scale the difference is measured at
    top1_agreement: int  # examples whose argmax is the same in both
    tolerance: float
    # beyond the tolerance: (PyTorch float32's, the file's) largest |logit - float64 logit|
    float64_errors: tuple[float, float] | None = None

    @property
    def allowed(self) -> float:
        """The largest difference that passes: the tolerance, scaled by logits beyond 1."""
        return self.tolerance * max(1.0, self.max_abs_logit)

    @property
    def passed(self) -> bool:
        if self.max_abs_difference <= self.allowed:  # False for nan
            return True
        if self.float64_errors is None:
            return False
        torch_error, file_error = self.float64_errors
        return file_error <= FLOAT32_FACTOR * torch_error

    def describe(self) -> str:
        within = self.max_abs_difference <= self.allowed
        scale = f"{self.tolerance:.3g}"
        if self.max_abs_logit > 1.0:
            scale += f" x largest |logit| {self.max_abs_logit:.3g}"
        text = (
            f"max |{self.runtime} - PyTorch| = {self.max_abs_difference:.3g} "
            f"{'<=' if within else '>'} {self.allowed:.3g} ({scale})"
        )
        if self.float64_errors is not None:
            torch_error, file_error = self.float64_errors
            verdict = "float32 rounding" if self.passed else "more than float32 rounding"
            text += (
                f"; from the float64 logits: {self.runtime} {file_error:.3g}, PyTorch float32 "
                f"{torch_error:.3g} ({verdict}: the limit is {FLOAT32_FACTOR:g}x PyTorch's)"
            )
        return (
            f"{text}; over the logits of {self.examples} images, "
            f"top-1 agrees on {self.top1_agreement}/{self.examples}"
        )


class CheckFailed(Exception):
    """The exported model's outputs differ from PyTorch's by more than allowed."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.describe())
        self.result = result


def check_outputs(
    model: nn.Module, batch: torch.Tensor, exported: torch.Tensor, runtime: str, tolerance: float
) -> CheckResult:
    """`exported`, the file's logits for `batch`, against `model`'s (in eval mode), and beyond
    the tolerance against `model` in float64 (run on a copy)."""
    with torch.no_grad():
        reference = model(batch)
    result = compare(reference, exported, runtime, tolerance)
    if result.passed or not math.isfinite(result.max_abs_difference):
        return result
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(batch.double()).cpu()
    errors = (
        _max_abs(reference.double().cpu() - exact),
        _max_abs(exported.double().cpu() - exact),
    )
    return replace(result, float64_errors=errors)


def compare(
    reference: torch.Tensor, exported: torch.Tensor, runtime: str, tolerance: float
) -> CheckResult:
    """PyTorch's logits `reference` (N, K) against the exported model's `exported`."""
    reference, exported = reference.detach().float().cpu(), exported.detach().float().cpu()
    n = reference.shape[0]
    if reference.shape != exported.shape:
        return CheckResult(runtime, n, math.inf, _max_abs(reference), 0, tolerance)
    worst = _max_abs(reference - exported)  # torch's max propagates nan
    agree = int((reference.argmax(dim=1) == exported.argmax(dim=1)).sum())
    return CheckResult(runtime, n, worst, _max_abs(reference), agree, tolerance)


def _max_abs(x: torch.Tensor) -> float:
    return float(x.abs().max()) if x.numel() else 0.0
