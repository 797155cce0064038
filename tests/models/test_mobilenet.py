"""MobileNet v1 against Howard et al. 2017: Table 1's layers, Tables 2, 6 and 7's figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.paper import compare
from cnnlab.analysis.summary import leaf_costs, summarize
from cnnlab.data.preprocessing import IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.registry import get_spec

# Table 1 at 224x224 (the next-to-last "Conv dw / s2" keeps 7x7: stride 1)
TABLE_1_SHAPES = {
    "conv1": (32, 112, 112),
    "sep1": (64, 112, 112),
    "sep2": (128, 56, 56),
    "sep3": (128, 56, 56),
    "sep4": (256, 28, 28),
    "sep5": (256, 28, 28),
    **{f"sep{i}": (512, 14, 14) for i in range(6, 12)},
    "sep12": (1024, 7, 7),
    "sep13": (1024, 7, 7),
    "pool": (1024, 1, 1),
    "output": (1000,),
}


@pytest.fixture(scope="module")
def comparisons():
    return compare("mobilenet_v1")


@pytest.fixture(scope="module")
def v1():
    torch.manual_seed(0)
    return create_model("mobilenet_v1").eval()


def test_every_published_figure_matches(comparisons):
    assert len(comparisons) == len(get_spec("mobilenet_v1").published) == 13
    wrong = [
        f"{c.figure.source} {c.figure.quantity} [{c.configuration}]: "
        f"paper {c.figure.printed}, ours {c.rendered} ({c.computed:,.4f})"
        for c in comparisons
        if not c.matches
    ]
    assert not wrong, "\n".join(wrong)


def test_published_figures_count_the_classifier(comparisons):
    """Table 6's 569M is 567.7M of convolutions plus the FC layer's 1,024,000."""
    default = next(c for c in comparisons if c.figure.quantity == "macs" and not c.figure.overrides)
    assert default.computed == 567_716_352 + 1024 * 1000


def test_layers_follow_table_1(v1):
    shapes = {r.name: r.output_shape for r in summarize(v1).layers}
    assert shapes == TABLE_1_SHAPES
    assert v1.stages == tuple(n for n in TABLE_1_SHAPES if n not in ("pool", "output"))
    assert v1.num_features == 1024 and v1.input_size == (3, 224, 224)


def test_separable_layers_are_depthwise_then_pointwise_as_in_figure_3(v1):
    for i in range(1, 14):
        block = getattr(v1, f"sep{i}")
        kinds = [type(m) for m in block]
        assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2, i
        dw, pw = block.depthwise, block.pointwise
        assert dw.kernel_size == (3, 3) and dw.groups == dw.in_channels == dw.out_channels
        assert pw.kernel_size == (1, 1) and pw.groups == 1
        assert dw.bias is None and pw.bias is None  # batch norm supplies the shift
    assert v1.conv1.conv.kernel_size == (3, 3) and v1.conv1.conv.stride == (2, 2)


def _weights(model: nn.Module) -> dict[str, int]:
    counts = {"conv1x1": 0, "dw": 0, "conv": 0, "fc": 0}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            kind = "conv1x1" if m.kernel_size == (1, 1) else "dw" if m.groups > 1 else "conv"
            counts[kind] += m.weight.numel()
        elif isinstance(m, nn.Linear):
            counts["fc"] += m.weight.numel()
    return counts


def test_table_2_resources_per_layer_type(v1):
    """Table 2's rows: mult-adds with the FC layer; parameters are weights only (no batch
    norm, no FC bias). The paper prints 1.19% for the full 3x3 convolution, with which its
    column sums to 99.29%: the digits of 1.91% (10,838,016 of 568,740,352) transposed."""
    macs = {"conv1x1": 0, "dw": 0, "conv": 0, "fc": 0}
    for leaf in leaf_costs(v1, (3, 224, 224)):
        m = leaf.module
        if isinstance(m, nn.Conv2d):
            kind = "conv1x1" if m.kernel_size == (1, 1) else "dw" if m.groups > 1 else "conv"
            macs[kind] += leaf.macs
        elif isinstance(m, nn.Linear):
            macs["fc"] += leaf.macs
    weights = _weights(v1)

    def shares(d: dict[str, int]) -> dict[str, str]:
        return {k: f"{100 * v / sum(d.values()):.2f}%" for k, v in d.items()}

    assert shares(macs) == {"conv1x1": "94.86%", "dw": "3.06%", "conv": "1.91%", "fc": "0.18%"}
    assert shares(weights) == {"conv1x1": "74.59%", "dw": "1.06%", "conv": "0.02%", "fc": "24.33%"}


def test_width_multiplier_thins_every_layer():
    model = create_model("mobilenet_v1", width_mult=0.75)
    widths = [model.conv1.conv.out_channels] + [
        getattr(model, f"sep{i}").pointwise.out_channels for i in range(1, 14)
    ]
    assert widths == [24, 48, 96, 96, 192, 192, *[384] * 6, 768, 768]
    assert model.num_features == 768 and model.output.fc.in_features == 768
    weights = _weights(model)
    assert weights["conv"] + weights["dw"] + weights["conv1x1"] == 1_800_144  # 648 + ...


def test_resolution_sets_the_input_and_keeps_the_parameters(v1):
    model = create_model("mobilenet_v1", resolution=128).eval()
    assert model.input_size == (3, 128, 128) and not model.fixed_input_size
    shapes = {r.name: r.output_shape for r in summarize(model).layers}
    assert shapes["conv1"] == (32, 64, 64) and shapes["sep13"] == (1024, 4, 4)
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in v1.parameters()) == 4_231_976
    with torch.no_grad():  # global pooling: other sizes pass too
        assert model(torch.randn(1, 3, 160, 160)).shape == (1, 1000)


def test_small_variant_keeps_32x32_maps_and_stays_cheap():
    model = create_model("mobilenet_v1_small").eval()
    assert model.input_size == (3, 32, 32) and model.num_classes == 10
    summary = summarize(model)
    shapes = {r.name: r.output_shape for r in summary.layers}
    assert shapes["conv1"] == (16, 32, 32) and shapes["sep1"] == (32, 32, 32)
    assert shapes["sep2"] == (64, 16, 16) and shapes["sep4"] == (128, 8, 8)
    assert shapes["sep6"] == (256, 4, 4) and shapes["sep12"] == shapes["sep13"] == (512, 4, 4)
    assert model.conv1.conv.stride == (1, 1) and model.sep12.depthwise.stride == (1, 1)
    assert summary.total["macs"] < 0.1e9


def test_options_change_the_network():
    plain = create_model("mobilenet_v1_small", norm="none", activation="relu6", dropout=0.2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert plain.sep1.depthwise.bias is not None and plain.conv1.conv.bias is not None
    assert sum(isinstance(m, nn.ReLU6) for m in plain.modules()) == 27
    assert isinstance(plain.output.dropout, nn.Dropout) and plain.output.dropout.p == 0.2
    grouped = create_model("mobilenet_v1_small", norm="group")
    assert sum(isinstance(m, nn.GroupNorm) for m in grouped.modules()) == 27
    assert isinstance(create_model("mobilenet_v1_small").output.dropout, nn.Identity)


def test_init_option_is_applied():
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_small", init="normal_0.01")
    assert model.sep13.pointwise.weight.std().item() == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("width_mult", 0.0, "width_mult=0.0"),
        ("width_mult", "wide", "width_mult='wide'"),
        ("resolution", 0, "resolution=0"),
        ("resolution", 224.0, "resolution=224.0"),
        ("strides", (2, 1, 2), "strides=\\(2, 1, 2\\)"),
        ("strides", (3,) * 14, "strides="),
        ("norm", "batchnorm", "norm='batchnorm'"),
        ("activation", "swish", "activation='swish'"),
        ("dropout", 1.0, "dropout=1.0"),
        ("init", "zeros", "init='zeros'"),
    ],
)
def test_bad_option_values_are_one_line_errors(option, value, message):
    with pytest.raises(CnnlabError, match=message):
        create_model("mobilenet_v1_small", **{option: value})


def test_recipes():
    recipe = get_spec("mobilenet_v1").recipe
    assert recipe.preprocessing == IMAGENET and "RMSprop" in recipe.note
    assert recipe.weight_decay <= 1e-4  # "very little" decay
    small = get_spec("mobilenet_v1_small").recipe
    assert small.preprocessing.pad_to == 32
