"""Local response normalisation, Krizhevsky, Sutskever and Hinton 2012, Section 3.3:

    b[c] = a[c] / (k + alpha * sum over the n channels around c of a[j]^2) ** beta

with k = 2, n = 5, alpha = 1e-4, beta = 0.75. PyTorch's nn.LocalResponseNorm
divides alpha by n; this layer follows the paper's formula, so the constants
read as published.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalResponseNorm(nn.Module):
    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(x, self.size, self.alpha * self.size, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
