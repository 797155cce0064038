"""LeNet-5's own layers against PyTorch reference computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    LENET5_C3_TABLE,
    ConnectionTableConv2d,
    EuclideanRBF,
    ScaledTanh,
    TrainableSubsampling,
    lecun_1998_init_,
)
from cnnlab.layers.rbf_output import digit_prototypes


def test_scaled_tanh_maps_plus_minus_one_to_themselves():
    f = ScaledTanh()
    out = f(torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4, rtol=0)


def test_trainable_subsampling_is_coefficient_times_block_sum_plus_bias():
    layer = TrainableSubsampling(3)
    with torch.no_grad():
        layer.coefficient.copy_(torch.tensor([0.5, -2.0, 3.0]))
        layer.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = torch.randn(2, 3, 8, 8)
    block_sum = F.avg_pool2d(x, 2) * 4
    expected = block_sum * layer.coefficient.view(1, 3, 1, 1) + layer.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_c3_table_is_the_papers_table_one():
    assert len(LENET5_C3_TABLE) == 16
    assert [len(row) for row in LENET5_C3_TABLE] == [3] * 6 + [4] * 9 + [6]
    assert sum(len(row) for row in LENET5_C3_TABLE) == 60  # 60 kernels: 1,500 weights


def test_connection_table_conv_sums_only_the_tables_input_maps():
    torch.manual_seed(0)
    conv = ConnectionTableConv2d(6, LENET5_C3_TABLE, 5)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, 6, 14, 14)
    kernels = {}  # (output map, input map) -> 5x5 kernel, read from the grouped parameters
    for n_in, weight in zip(conv.group_sizes, conv.weights):
        maps = [o for o, row in enumerate(LENET5_C3_TABLE) if len(row) == n_in]
        for j, o in enumerate(maps):
            for slot, i in enumerate(LENET5_C3_TABLE[o]):
                kernels[o, i] = weight[j, slot]
    expected = torch.stack(
        [
            sum(F.conv2d(x[:, i : i + 1], kernels[o, i][None, None]) for i in row)[:, 0]
            + conv.bias[o]
            for o, row in enumerate(LENET5_C3_TABLE)
        ],
        dim=1,
    )
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    dense = conv.dense_weight
    for o, row in enumerate(LENET5_C3_TABLE):
        assert dense[o, [i for i in range(6) if i not in row]].abs().sum() == 0


def test_connection_table_conv_counts_only_the_tables_links():
    conv = ConnectionTableConv2d(6, LENET5_C3_TABLE, 5)
    with FlopCounterMode(display=False) as counter:
        out = conv(torch.zeros(1, 6, 14, 14))
    macs, connections = conv.cost(out)
    assert (macs, connections) == (150_000, 151_600)
    assert counter.get_total_flops() // 2 == 240_000  # executed densely, for speed


def test_connection_table_conv_trains_only_the_tables_kernels():
    conv = ConnectionTableConv2d(6, LENET5_C3_TABLE, 5)
    assert sum(p.numel() for p in conv.parameters()) == 1_516
    conv(torch.randn(2, 6, 14, 14)).square().sum().backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in conv.weights)


def test_connection_table_rejects_a_bad_row():
    with pytest.raises(CnnlabError, match="row 1"):
        ConnectionTableConv2d(6, ((0, 1), (2, 7)), 5)


def test_rbf_output_is_negated_squared_distance_to_fixed_prototypes():
    rbf = EuclideanRBF(84, 10)
    x = torch.randn(5, 84)
    expected = -torch.cdist(x, digit_prototypes()).pow(2)
    torch.testing.assert_close(rbf(x), expected, rtol=1e-4, atol=1e-3)
    assert list(rbf.parameters()) == []  # the prototypes are not trained
    assert set(digit_prototypes().unique().tolist()) == {-1.0, 1.0}


def test_rbf_prototypes_are_distinct_codes_for_other_class_counts():
    protos = EuclideanRBF(84, 26).prototypes
    assert protos.shape == (26, 84) and torch.cdist(protos, protos).add(torch.eye(26)).min() > 0


def test_lecun_init_draws_within_plus_minus_2_4_over_fan_in():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5),
        TrainableSubsampling(6),
        ConnectionTableConv2d(6, LENET5_C3_TABLE, 5),
    )
    lecun_1998_init_(model)
    assert model[0].weight.abs().max() <= 2.4 / 25
    assert model[0].weight.abs().max() > 0.8 * 2.4 / 25  # spread over the whole range
    assert model[1].coefficient.abs().max() <= 2.4 / 4
    for n_in, weight in zip(model[2].group_sizes, model[2].weights):
        assert weight.abs().max() <= 2.4 / (25 * n_in)
