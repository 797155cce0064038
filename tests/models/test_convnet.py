"""The configurable `convnet` family: its layout follows its config, it spans LeNet-5,
its costs follow the convolution arithmetic, and bad configs are one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.paper import measure
from cnnlab.errors import CnnlabError

LENET5 = dict(
    widths=[6, 16],
    kernels=[5, 5],
    padding="valid",
    downsample="avg",
    norm="none",
    activation="tanh",
    head="flatten",
    hidden=[120, 84],
)


def stage_shapes(model: nn.Module, shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    hooks = [
        getattr(model, s).register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
        for s in model.stages
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return seen


def convs_of(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_the_default_halves_the_maps_three_times_and_pools_globally():
    model = create_model("convnet")
    assert model.input_size == (1, 32, 32) and not model.fixed_input_size
    assert stage_shapes(model, (1, 32, 32)) == [(32, 16, 16), (64, 8, 8), (128, 4, 4)]
    assert model.num_features == 128
    assert len([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]) == 3
    # global average pooling: a 28x28 digit needs no padding to 32
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # 32*32*32*9 + 16*16*64*32*9 + 8*8*128*64*9 + 128*10 multiply-adds
    assert measure(model, (1, 32, 32))["macs"] == 294_912 + 4_718_592 + 4_718_592 + 1_280


def test_lenet5_is_a_point_of_the_space():
    ours, theirs = create_model("convnet", **LENET5), create_model("lenet5")
    assert stage_shapes(ours, (1, 32, 32)) == [(6, 14, 14), (16, 5, 5)]
    assert ours.num_features == 84 and ours.fixed_input_size
    a, b = measure(ours, (1, 32, 32)), measure(theirs, (1, 32, 32))
    assert (a["params"], a["macs"]) == (b["params"], b["macs"]) == (61_706, 416_520)


def test_a_strided_convolution_replaces_the_pool():
    pooled = create_model("convnet", widths=[8, 16], kernels=[5, 3])
    strided = create_model("convnet", widths=[8, 16], kernels=[5, 3], downsample="stride")
    assert stage_shapes(strided, (1, 32, 32)) == stage_shapes(pooled, (1, 32, 32))
    assert not [m for m in strided.modules() if isinstance(m, nn.MaxPool2d)]
    assert [c.stride for c in convs_of(strided)] == [(2, 2), (2, 2)]
    # the strided convolution computes only the positions the pool would keep: 1/4 of them
    conv_macs = 32 * 32 * 8 * 25 + 16 * 16 * 16 * 8 * 9
    assert measure(pooled, (1, 32, 32))["macs"] == conv_macs + 16 * 10
    assert measure(strided, (1, 32, 32))["macs"] == conv_macs // 4 + 16 * 10


def test_convs_kernels_pooling_norm_and_head_are_what_the_config_says():
    model = create_model(
        "convnet", widths=[8, 16], kernels=[7, 3], convs=2, downsample="avg", norm="group",
        head="flatten", hidden=[32], dropout=0.2, in_chans=3,
    )  # fmt: skip
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs_of(model)] == [
        (3, 8, 7),
        (8, 8, 7),
        (8, 16, 3),
        (16, 16, 3),
    ]
    assert all(c.bias is None for c in convs_of(model))  # the normalisation has the bias
    assert len([m for m in model.modules() if isinstance(m, nn.AvgPool2d)]) == 2
    assert len([m for m in model.modules() if isinstance(m, nn.GroupNorm)]) == 4
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    assert model.num_features == 32 and model.fc[1].in_features == 16 * 8 * 8
    assert model.fixed_input_size and model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(CnnlabError, match="does not fit"):
        model.validate_input((3, 28, 28))


def test_halving_after_the_first_conv_runs_the_rest_of_the_stage_at_the_smaller_size():
    """The speed runs' stage (Page 2018; Jordan 2024): conv, pool, norm, activation, conv..."""
    end = create_model("convnet", widths=[8, 16], kernels=[3, 3], convs=2, in_chans=3)
    first = create_model(
        "convnet", widths=[8, 16], kernels=[3, 3], convs=2, halve_at="first", in_chans=3
    )
    assert stage_shapes(first, (3, 32, 32)) == stage_shapes(end, (3, 32, 32))
    assert [name for name, _ in first.stage1.conv1.named_children()] == [
        "conv", "pool", "norm", "act"
    ]  # fmt: skip
    assert "pool" not in dict(first.stage1.named_children())
    # each stage's second convolution sees a quarter of the positions
    assert (
        measure(end, (3, 32, 32))["macs"]
        == (
            32 * 32 * 8 * 3 * 9 + 32 * 32 * 8 * 8 * 9 + 16 * 16 * 16 * 8 * 9 + 16 * 16 * 16 * 16 * 9
        )
        + 16 * 10
    )
    assert (
        measure(first, (3, 32, 32))["macs"]
        == (32 * 32 * 8 * 3 * 9 + 16 * 16 * 8 * 8 * 9 + 16 * 16 * 16 * 8 * 9 + 8 * 8 * 16 * 16 * 9)
        + 16 * 10
    )
    strided = create_model("convnet", widths=[8], kernels=[3], convs=2, halve_at="first",
                           downsample="stride")  # fmt: skip
    assert [c.stride for c in convs_of(strided)] == [(2, 2), (1, 1)]


def test_the_speedrun_variant_is_the_public_cifar10_speed_runs_plain_net():
    model = create_model("convnet_speedrun")
    assert model.input_size == (3, 32, 32)
    assert stage_shapes(model, (3, 32, 32)) == [(64, 16, 16), (256, 8, 8), (256, 4, 4)]
    assert isinstance(model.pool, nn.AdaptiveMaxPool2d) and model.num_features == 256
    assert sum(isinstance(m, nn.GELU) for m in model.modules()) == 6
    convs = 32 * 32 * 64 * 3 * 9 + 16 * 16 * 64 * 64 * 9 + 16 * 16 * 256 * 64 * 9
    convs += 8 * 8 * 256 * 256 * 9 + 8 * 8 * 256 * 256 * 9 + 4 * 4 * 256 * 256 * 9
    assert measure(model, (3, 32, 32))["macs"] == convs + 256 * 10 == 133_892_608


def test_json_lists_from_the_command_line_become_tuples():
    model = create_model("convnet", widths=[8, 16], kernels=[5, 5], hidden=[])
    assert model.cfg.widths == (8, 16) and model.cfg.kernels == (5, 5) and model.cfg.hidden == ()
    hash(model.cfg)  # a frozen config stays hashable


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"widths": 32}, r"^widths=32: expected a list, one per stage, like \[32, 64\]$"),
        ({"widths": [], "kernels": []}, r"^widths=\(\): expected a list"),
        ({"widths": [8, 0], "kernels": [3, 3]}, r"^widths=\[8, 0\]: expected positive integers$"),
        ({"widths": [8, True], "kernels": [3, 3]}, r"^widths=\[8, True\]: expected positive"),
        ({"widths": [8, 16]}, r"^kernels=\[3, 3, 3\] for widths=\[8, 16\]: expected one kernel"),
        ({"kernels": [3, 4, 3]}, r"^kernels=\[3, 4, 3\]: expected odd sizes"),
        ({"kernels": "3"}, r"^kernels='3': expected a list"),
        ({"hidden": 120}, r"^hidden=120: expected a list of widths"),
        ({"hidden": [120, -1]}, r"^hidden=\[120, -1\]: expected positive integers$"),
        ({"convs": 0}, r"^convs=0: expected a positive integer$"),
        ({"padding": "full"}, r"^padding='full': expected one of same, valid$"),
        ({"downsample": "none"}, r"^downsample='none': expected one of max, avg, stride$"),
        ({"head": "min"}, r"^head='min': expected one of avg, max, flatten$"),
        ({"halve_at": "last"}, r"^halve_at='last': expected one of end, first$"),
        ({"norm": "lrn"}, r"^norm='lrn': expected one of batch, layer"),
        ({"dropout": 1.0}, r"^dropout=1.0: expected a probability in \[0, 1\)$"),
        (
            {"widths": [8, 8, 8], "kernels": [7, 7, 7], "padding": "valid"},
            r"^widths=\[8, 8, 8\], kernels=\[7, 7, 7\], convs=1, padding=valid: stage 3 gets "
            r"maps too small for it; expected fewer stages, smaller kernels or padding same$",
        ),
    ],
)
def test_bad_configs_are_one_line_errors(overrides, message):
    with pytest.raises(CnnlabError, match=message):
        create_model("convnet", **overrides)
