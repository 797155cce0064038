"""LeCun's scaled hyperbolic tangent, f(a) = A tanh(S a) with A = 1.7159, S = 2/3.

LeCun et al. 1998, "Gradient-based learning applied to document recognition",
Section II-B and Appendix A: with this choice f(1) = 1 and f(-1) = -1, and the
second derivative of f is largest at +-1, where the RBF targets sit.
"""

from __future__ import annotations

import torch
from torch import nn


class ScaledTanh(nn.Module):
    """f(a) = amplitude * tanh(slope * a); the defaults are the paper's."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"
