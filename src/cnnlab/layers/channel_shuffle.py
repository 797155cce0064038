"""Channel shuffle, Zhang et al. 2018 ("ShuffleNet"), Section 3.1 and Fig. 1.

After a grouped convolution each group's outputs come only from that group's
inputs; reshaping the channels to (groups, channels/groups), transposing and
flattening deals every group's channels out to all the groups of the next one.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CnnlabError


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    if c % groups:
        raise CnnlabError(f"channel shuffle of {c} channels into {groups} groups: not divisible")
    # (N, g*k, H, W) -> (N, g, k, H, W) -> (N, k, g, H, W) -> (N, k*g, H, W)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
