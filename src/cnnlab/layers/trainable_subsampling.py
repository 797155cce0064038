"""LeNet-5's trainable subsampling (layers S2 and S4).

LeCun et al. 1998, Section II-B: "The four inputs to a unit in S2 are added,
then multiplied by a trainable coefficient, and added to a trainable bias."
Each map has one coefficient and one bias. The squashing function that follows
is a separate module.

It is computed as a depthwise convolution whose kernel repeats the map's
coefficient, which is the same arithmetic, runs fast on every backend, and is
counted by torch.utils.flop_counter like any convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TrainableSubsampling(nn.Module):
    """coefficient[c] * sum of each k x k block of map c + bias[c] (no overlap)."""

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.coefficient = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # An average pool to begin with; lenet5_1998 re-initialises as in the paper.
        nn.init.constant_(self.coefficient, 1.0 / self.kernel_size**2)
        nn.init.zeros_(self.bias)

    @property
    def fan_in(self) -> int:
        """Inputs summed into one unit."""
        return self.kernel_size**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        # (C,) -> (C, 1, k, k): the same coefficient at every tap of a map's kernel
        weight = self.coefficient.view(-1, 1, 1, 1).expand(-1, 1, k, k)
        return F.conv2d(x, weight, self.bias, stride=k, groups=self.channels)

    def cost(self, out: torch.Tensor) -> tuple[int, int]:
        """(multiply-adds, connections) for one example; LeCun counts the bias too."""
        units = out[0].numel()
        return units * self.fan_in, units * (self.fan_in + 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"
