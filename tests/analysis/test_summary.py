"""The per-layer summary agrees with torch.utils.flop_counter and counts parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import create_model, list_models
from cnnlab.analysis.summary import leaf_costs, summarize
from cnnlab.errors import CnnlabError
from cnnlab.layers import ConnectionTableConv2d


def _count(model) -> tuple[int, int]:
    """(flop_counter's multiply-adds, those spent on the absent links of connection tables).

    ConnectionTableConv2d runs a dense convolution with zero kernels where its table has
    no link (it is faster); the summary counts only the table's links, as the paper does.
    """
    zero_links = []

    def hook(m, i, out):
        missing = m.out_channels * m.in_channels - sum(len(r) for r in m.table)
        zero_links.append(missing * m.kernel_size**2 * out[0, 0].numel())

    for m in model.modules():
        if isinstance(m, ConnectionTableConv2d):
            m.register_forward_hook(hook)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *model.input_size))
    return counter.get_total_flops() // 2, sum(zero_links)


# every layer type of the zoo, at the cost of a few small networks: the LeNets, and the
# smallest member of each other family (the papers' own numbers pin the big ones)
REPRESENTATIVES = [*list_models("lenet*"), *list_models("*_small"), "resnet20", "densenet40_k12"]


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_macs_agree_with_flop_counter(name):
    model = create_model(name).eval()
    summary = summarize(model)
    executed, zero_links = _count(model)
    assert summary.total["macs"] == executed - zero_links
    assert summary.total["params"] == sum(p.numel() for p in model.parameters())


def test_depth_expands_blocks_into_their_layers():
    rows = summarize(create_model("lenet5_modern"), depth=2).layers
    names = [r.name for r in rows]
    assert "c1.0" in names and "c1.1" in names  # the convolution and its batch norm
    assert sum(r.params for r in rows) == 61_990


def test_summary_refuses_an_input_that_does_not_fit():
    with pytest.raises(CnnlabError, match="28x28 does not fit"):
        summarize(create_model("lenet5"), (1, 28, 28))


def test_summary_leaves_the_model_mode_alone():
    model = create_model("lenet5_modern").train()
    summarize(model)
    assert model.training


def test_a_1x1_bottleneck_cuts_the_cost_about_tenfold():
    # the lectures' Inception example: 28x28x192 -> 28x28x32 with 5x5 filters
    direct = sum(leaf.macs for leaf in leaf_costs(nn.Conv2d(192, 32, 5, padding=2), (192, 28, 28)))
    reduced = nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding=2))
    bottleneck = sum(leaf.macs for leaf in leaf_costs(reduced, (192, 28, 28)))
    assert direct == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400  # "about 120 M"
    assert bottleneck == 28 * 28 * (16 * 192 + 32 * 5 * 5 * 16) == 12_443_648  # "about 12.4 M"
