"""AlexNet against Krizhevsky et al. 2012 (Section 3, Figure 2, Section 5) and the
counts published for it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model, get_spec
from cnnlab.analysis.paper import compare, measure
from cnnlab.analysis.summary import summarize
from cnnlab.data.preprocessing import IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.layers import LocalResponseNorm

# Figure 2, one row per named child: output (C, H, W) of a 227x227x3 image
FIGURE_2 = {
    "conv1": (96, 55, 55),
    "pool1": (96, 27, 27),
    "conv2": (256, 27, 27),
    "pool2": (256, 13, 13),
    "conv3": (384, 13, 13),
    "conv4": (384, 13, 13),
    "conv5": (256, 13, 13),
    "pool5": (256, 6, 6),
    "fc6": (4096,),
    "fc7": (4096,),
    "output": (1000,),
}
CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")


@pytest.fixture(scope="module")
def alexnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("alexnet").eval()


def _conv(model: nn.Module, name: str) -> nn.Conv2d:
    return getattr(model, name)[0]


@pytest.mark.parametrize("name", ["alexnet", "alexnet_ungrouped"])
def test_published_figures_match(name):
    comparisons = compare(name)
    assert comparisons, f"{name} declares no published figures"
    for c in comparisons:
        assert c.matches, f"{name} {c.figure.quantity}: paper {c.figure.printed}, ours {c.rendered}"


def test_layer_shapes_follow_figure_2(alexnet):
    rows = summarize(alexnet).layers
    assert {r.name: r.output_shape for r in rows} == FIGURE_2
    assert [r.name for r in rows] == list(FIGURE_2)


def test_towers_are_groups_of_two_and_conv3_crosses_them(alexnet):
    groups = {n: _conv(alexnet, n).groups for n in CONVS}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    kernels = {n: (_conv(alexnet, n).kernel_size, _conv(alexnet, n).stride) for n in CONVS}
    assert kernels["conv1"] == ((11, 11), (4, 4)) and kernels["conv2"] == ((5, 5), (1, 1))
    ungrouped = create_model("alexnet_ungrouped", fc_width=16, init="default")
    assert all(_conv(ungrouped, n).groups == 1 for n in CONVS)


@torch.no_grad()
def test_a_tower_sees_only_its_own_half_of_the_maps(alexnet):
    conv2 = _conv(alexnet, "conv2")  # 96 -> 256: maps 0-47 feed outputs 0-127 only
    x = torch.randn(1, 96, 27, 27)
    y = x.clone()
    y[:, 48:] += 1.0
    delta = (conv2(y) - conv2(x)).abs().amax(dim=(0, 2, 3))
    assert delta[:128].max() == 0 and delta[128:].min() > 0


def test_lrn_after_relu_of_conv1_and_conv2_with_the_papers_constants(alexnet):
    for name in CONVS:
        block = [type(m) for m in getattr(alexnet, name)]
        expected = [nn.Conv2d, nn.ReLU] + (
            [LocalResponseNorm] if name in ("conv1", "conv2") else []
        )
        assert block == expected, name
    lrn = alexnet.conv1[2]
    assert (lrn.k, lrn.size, lrn.alpha, lrn.beta) == (2.0, 5, 1e-4, 0.75)
    pools = [alexnet.pool1, alexnet.pool2, alexnet.pool5]
    assert all((p.kernel_size, p.stride) == (3, 2) for p in pools)  # overlapping (Section 3.4)


def test_norm_option_replaces_lrn():
    kinds = {}
    for norm in ("none", "batch"):
        model = create_model("alexnet", fc_width=16, norm=norm, init="default")
        kinds[norm] = [type(m).__name__ for n in CONVS for m in getattr(model, n)]
    assert "LocalResponseNorm" not in kinds["none"] + kinds["batch"]
    assert kinds["none"].count("BatchNorm2d") == 0 and kinds["batch"].count("BatchNorm2d") == 2


def test_dropout_on_the_units_of_fc6_and_fc7(alexnet):
    assert [type(m) for m in alexnet.fc7] == [nn.Dropout, nn.Linear, nn.ReLU]
    assert [type(m) for m in alexnet.output] == [nn.Dropout, nn.Linear]
    rates = [m.p for m in alexnet.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.5, 0.5]
    plain = create_model("alexnet", fc_width=16, dropout=0.0, init="default")
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_paper_initialisation(alexnet):
    layers = {n: _conv(alexnet, n) for n in CONVS}
    layers |= {"fc6": alexnet.fc6[0], "fc7": alexnet.fc7[1], "fc8": alexnet.output[1]}
    biases = {n: torch.unique(m.bias).tolist() for n, m in layers.items()}
    assert biases == {
        "conv1": [0.0],
        "conv2": [1.0],
        "conv3": [0.0],
        "conv4": [1.0],
        "conv5": [1.0],
        "fc6": [1.0],
        "fc7": [1.0],
        "fc8": [0.0],
    }
    assert alexnet.fc6[0].weight.std().item() == pytest.approx(0.01, rel=0.01)
    assert alexnet.fc6[0].weight.mean().abs().item() < 1e-4
    fresh = create_model("alexnet", fc_width=16, init="xavier_uniform")
    assert torch.count_nonzero(fresh.conv2[0].bias) == 0


def test_224_input_does_not_fit(alexnet):
    with pytest.raises(CnnlabError, match="does not fit"):
        alexnet.validate_input((3, 224, 224))


def test_paper_recipe():
    recipe = get_spec("alexnet").recipe
    got = (recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay, recipe.batch_size)
    assert got == ("sgd", 0.01, 0.9, 5e-4, 128)
    assert (recipe.schedule, recipe.epochs, recipe.preprocessing) == ("multistep", 90, IMAGENET)
    assert "PCA" in recipe.note and get_spec("alexnet_ungrouped").recipe == recipe


def test_small_variant_is_cheap_and_keeps_32x32_maps_alive():
    model = create_model("alexnet_small").eval()
    shapes = {r.name: r.output_shape for r in summarize(model).layers}
    assert shapes["conv1"] == (48, 32, 32) and shapes["pool5"] == (128, 4, 4)
    assert measure(model, (3, 32, 32))["macs"] < 0.3e9
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 5 and not any(isinstance(m, LocalResponseNorm) for m in model.modules())


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("norm", "lrm"),
        ("groups", 3),
        ("dropout", 1.0),
        ("init", "zeros"),
        ("activation", "swish"),
        ("widths", (96, 256, 384)),
        ("norm_at", (0, 6)),
        ("stem", "big"),
        ("fc_width", 0),
    ],
)
def test_bad_option_is_a_one_line_error(option, value):
    with pytest.raises(CnnlabError, match=option) as info:
        create_model("alexnet_small", **{option: value})
    assert "\n" not in str(info.value)


def test_stem_that_does_not_fit_the_input_is_an_error():
    with pytest.raises(CnnlabError, match="stem='imagenet'"):
        create_model("alexnet_small", stem="imagenet")
