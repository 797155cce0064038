"""A convolution in which each output map sees only some input maps.

LeCun et al. 1998, Section II-B and Table I: C3's 16 maps are each fed by 3, 4
or 6 of S2's 6 maps, "to keep the number of connections within reasonable
bounds" and to "break the symmetry in the network". `LENET5_C3_TABLE` is that
table, column by column.

The maps are grouped by how many inputs they take; each group gathers its input
maps and runs one grouped convolution, so only the connections in the table are
computed (and counted by torch.utils.flop_counter), never a masked dense kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError

# Table I: for each C3 map (column), the S2 maps (rows) connected to it.
LENET5_C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (0, 4, 5),
    (0, 1, 5),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (0, 3, 4, 5),
    (0, 1, 4, 5),
    (0, 1, 2, 5),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


class ConnectionTableConv2d(nn.Module):
    """A valid, stride-1 convolution whose output map o reads the input maps table[o]."""

    def __init__(
        self, in_channels: int, table: tuple[tuple[int, ...], ...], kernel_size: int
    ) -> None:
        super().__init__()
        for o, inputs in enumerate(table):
            if (
                not inputs
                or len(set(inputs)) != len(inputs)
                or not all(0 <= i < in_channels for i in inputs)
            ):
                raise CnnlabError(
                    f"connection table row {o} is {inputs}: expected distinct input maps "
                    f"in 0..{in_channels - 1}"
                )
        self.in_channels = in_channels
        self.out_channels = len(table)
        self.kernel_size = kernel_size
        self.table = tuple(tuple(sorted(row)) for row in table)
        fan_ins = sorted({len(row) for row in self.table})
        self.group_sizes = tuple(fan_ins)
        self.weights = nn.ParameterList()
        for n_in in fan_ins:
            maps = [o for o, row in enumerate(self.table) if len(row) == n_in]
            gather = torch.tensor([i for o in maps for i in self.table[o]])
            self.register_buffer(f"gather_{n_in}", gather, persistent=False)
            self.weights.append(
                nn.Parameter(torch.empty(len(maps), n_in, kernel_size, kernel_size))
            )
        order = [o for n_in in fan_ins for o, row in enumerate(self.table) if len(row) == n_in]
        # outputs come out grouped by fan-in; this puts them back in table order
        self.register_buffer("unshuffle", torch.argsort(torch.tensor(order)), persistent=False)
        self.bias = nn.Parameter(torch.empty(self.out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for n_in, weight in zip(self.group_sizes, self.weights):
            bound = 1.0 / math.sqrt(n_in * self.kernel_size**2)
            nn.init.uniform_(weight, -bound, bound)
        nn.init.zeros_(self.bias)

    def fan_in(self, out_channel: int) -> int:
        """Inputs of one unit of `out_channel` (its bias not counted)."""
        return len(self.table[out_channel]) * self.kernel_size**2

    @property
    def dense_weight(self) -> torch.Tensor:
        """The kernels as a dense (out, in, k, k) tensor, zero where the table has no link."""
        k = self.kernel_size
        dense = self.bias.new_zeros(self.out_channels, self.in_channels, k, k)
        for n_in, weight in zip(self.group_sizes, self.weights):
            maps = [o for o, row in enumerate(self.table) if len(row) == n_in]
            for j, o in enumerate(maps):
                dense[o, list(self.table[o])] = weight[j]
        return dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for n_in, weight in zip(self.group_sizes, self.weights):
            gathered = x.index_select(1, getattr(self, f"gather_{n_in}"))  # (N, maps*n_in, H, W)
            outs.append(F.conv2d(gathered, weight, groups=weight.shape[0]))  # (N, maps, H', W')
        out = torch.cat(outs, dim=1).index_select(1, self.unshuffle)
        return out + self.bias.view(1, -1, 1, 1)

    def cost(self, out: torch.Tensor) -> tuple[int, int]:
        """(multiply-adds, connections) for one example, only the table's links."""
        positions = out[0, 0].numel()
        macs = positions * sum(self.fan_in(o) for o in range(self.out_channels))
        return macs, macs + positions * self.out_channels

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"links={sum(len(r) for r in self.table)}"
        )
