"""A convolution in which each output map sees only some input maps.

LeCun et al. 1998, Section II-B and Table I: C3's 16 maps are each fed by 3, 4
or 6 of S2's 6 maps, "to keep the number of connections within reasonable
bounds" and to "break the symmetry in the network". `LENET5_C3_TABLE` is that
table, column by column.

Only the table's kernels are parameters (C3: 60 kernels, 1,516 parameters with
the biases), stored per fan-in group. The forward pass scatters them into a dense
(out, in, k, k) kernel with zeros where the table has no link and runs one
ordinary convolution, which on CPU is several times faster, forward and
backward, than grouped convolutions of 3, 4 and 6 gathered channels
(benchmarks/c3_connection_table.py measures both). It therefore executes (and
torch.utils.flop_counter counts) the dense multiply-adds, while `cost()` reports
the table's, which is what the paper and `cnnlab summary` count.
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
            # where each of the group's kernels sits in the dense (out, in) grid
            rows = torch.tensor([o for o in maps for _ in self.table[o]])
            cols = torch.tensor([i for o in maps for i in self.table[o]])
            self.register_buffer(f"rows_{n_in}", rows, persistent=False)
            self.register_buffer(f"cols_{n_in}", cols, persistent=False)
            shape = (len(maps), n_in, kernel_size, kernel_size)
            self.weights.append(nn.Parameter(torch.empty(shape)))
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
            index = (getattr(self, f"rows_{n_in}"), getattr(self, f"cols_{n_in}"))
            dense = dense.index_put(index, weight.reshape(-1, k, k))  # (maps*n_in, k, k)
        return dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight, self.bias)  # (N, in, H, W) -> (N, out, H', W')

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
