"""Receptive fields traced through convolutions, pools and merging paths."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.receptive_field import receptive_field
from cnnlab.analysis.summary import summarize


def _stack(n: int) -> nn.Sequential:
    return nn.Sequential(
        *(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()) for _ in range(n))
    )


def test_stacked_3x3_convolutions_see_5x5_then_7x7():
    # Simonyan and Zisserman 2015, Section 2.3
    assert receptive_field(_stack(2), (4, 16, 16)) == (5, 5)
    assert receptive_field(_stack(3), (4, 16, 16)) == (7, 7)


def test_stride_dilation_and_pooling_grow_the_field():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    assert receptive_field(net, (1, 32, 32)) == (10, 10)  # 5, then 6 (jump 2), then 6 + 2*2


class TwoPaths(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Conv2d(1, 1, 5, padding=2)
        self.narrow = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.wide(x), self.narrow(x)], 1) + x  # paths merge: widest wins


def test_merging_paths_keep_the_widest_field():
    assert receptive_field(TwoPaths(), (1, 8, 8)) == (5, 5)


def test_lenet5_fields_grow_to_the_whole_input():
    rows = summarize(create_model("lenet5_1998")).layers
    fields = {r.name: r.receptive_field for r in rows}
    assert fields == {
        "c1": (5, 5),
        "s2": (6, 6),
        "c3": (14, 14),
        "s4": (16, 16),
        "c5": (32, 32),
        "f6": None,
        "output": None,
    }
