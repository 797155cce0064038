"""ShuffleNet against Zhang et al. 2018: Table 1, Fig. 2, Section 3.3 and the published
complexities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model, list_models
from cnnlab.analysis.paper import compare
from cnnlab.analysis.summary import summarize
from cnnlab.errors import CnnlabError
from cnnlab.layers import ChannelShuffle
from cnnlab.models.shufflenet import (
    STAGE_CHANNELS,
    ShuffleNetConfig,
    ShuffleUnit,
    Widths,
    widths,
)
from cnnlab.registry import get_spec

NAMES = list_models("shufflenet_*")
GROUPS = (1, 2, 3, 4, 8)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def units(model: nn.Module) -> list[tuple[str, ShuffleUnit]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ShuffleUnit)]


def test_every_registered_name_is_there():
    expected = {f"shufflenet_v1_g{g}" for g in GROUPS} | {"shufflenet_v1_g3_small"}
    assert set(NAMES) == expected


@pytest.mark.parametrize("name", [n for n in NAMES if get_spec(n).published])
def test_published_complexities_match(name):
    for c in compare(name):
        assert c.matches, (
            f"{name} {c.figure.source} [{c.configuration}]: paper {c.figure.printed}, "
            f"ours {c.rendered} ({c.computed:,.0f})"
        )


def test_table1_figures_leave_out_the_classifier():
    # with the 1000-way classifier counted, g = 2, 4, 8 would not print Table 1's numbers
    for g, printed in ((2, "140M"), (4, "133M"), (8, "137M")):
        (fig, *_) = get_spec(f"shufflenet_v1_g{g}").published
        assert fig.printed == printed and fig.quantity == "macs_no_fc"
        summary = summarize(create_model(f"shufflenet_v1_g{g}"))
        assert round(summary.total["macs"] / 1e6) != int(printed[:-1])


@pytest.mark.parametrize("g", GROUPS)
def test_table1_output_sizes_and_channels(g):
    summary = summarize(create_model(f"shufflenet_v1_g{g}"))
    shapes = {r.name: r.output_shape for r in summary.layers}
    c2, c3, c4 = STAGE_CHANNELS[g]
    assert shapes["conv1"] == (24, 112, 112)
    assert shapes["maxpool"] == (24, 56, 56)
    assert shapes["stage2"] == (c2, 28, 28)
    assert shapes["stage3"] == (c3, 14, 14)
    assert shapes["stage4"] == (c4, 7, 7)
    assert shapes["output"] == (1000,)


@pytest.mark.parametrize("g", (1, 3, 8))
def test_units_follow_fig2_and_section_3_3(g):
    model = create_model(f"shufflenet_v1_g{g}")
    found = units(model)
    per_stage = [sum(n.startswith(f"stage{s}.") for n, _ in found) for s in (2, 3, 4)]
    assert per_stage == [4, 8, 4]
    c_in = 24
    for name, unit in found:
        stage, index = name.split(".")
        c_out = STAGE_CHANNELS[g][int(stage[-1]) - 2]
        stride = 2 if index == "0" else 1
        first_of_stage2 = name == "stage2.0"
        assert unit.conv1.groups == (1 if first_of_stage2 else g), name
        assert unit.conv1.out_channels == c_out // 4  # bottleneck = 1/4 of the output
        assert unit.conv2.groups == unit.conv2.in_channels == c_out // 4  # depthwise
        assert unit.conv2.stride == (stride, stride)
        assert unit.conv3.groups == g
        assert unit.conv3.out_channels == (c_out - c_in if stride == 2 else c_out), name
        assert isinstance(unit.shortcut, nn.AvgPool2d if stride == 2 else nn.Identity)
        shuffles = isinstance(unit.shuffle, ChannelShuffle)
        assert shuffles == (g > 1 and not first_of_stage2), name
        c_in = c_out
    # BN, no ReLU, after the depthwise convolution
    assert [type(m) for m in units(model)[1][1].children()] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        ChannelShuffle if g > 1 else nn.Identity,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.Identity,
        nn.ReLU,
    ]


@torch.no_grad()
def test_channel_shuffle_mixes_groups_and_its_absence_does_not():
    g = 3
    changed = {}
    for shuffle in (True, False):
        torch.manual_seed(0)
        model = create_model("shufflenet_v1_g3", width_mult=0.25, shuffle=shuffle).eval()
        unit = model.stage3[1]  # stride 1, grouped first 1x1
        c = unit.conv1.in_channels
        x = torch.randn(1, c, 6, 6)
        x2 = x.clone()
        x2[:, : c // g] += torch.randn(1, c // g, 6, 6)  # disturb group 0 only
        diff = (unit(x2) - unit(x)).abs().amax(dim=(0, 2, 3))
        changed[shuffle] = [
            bool((diff[k * c // g : (k + 1) * c // g] > 1e-6).any()) for k in range(g)
        ]
    assert changed[False] == [True, False, False]  # groups stay apart through the unit
    assert changed[True] == [True, True, True]  # the shuffle deals group 0 out to all


@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("s", (0.25, 0.5, 1.0, 1.5, 2.0, 0.3, 0.75))
def test_width_mult_keeps_every_grouping_divisible(g, s):
    w = widths(ShuffleNetConfig(groups=g, width_mult=s))
    assert w.stem % g == 0 and all(c % g == 0 for c in (*w.stages, *w.bottlenecks))
    assert w.stem < w.stages[0] < w.stages[1] < w.stages[2]
    if s in (0.25, 0.5, 1.5, 2.0, 1.0):
        assert w.stages == tuple(s * c for c in STAGE_CHANNELS[g])  # exactly s x Table 1
    assert all(abs(m - c / 4) < g for m, c in zip(w.bottlenecks, w.stages))


def test_width_mult_examples():
    assert widths(ShuffleNetConfig(groups=3, width_mult=0.5)) == Widths(
        12, (120, 240, 480), (30, 60, 120)
    )
    assert widths(ShuffleNetConfig(groups=8, width_mult=0.5)) == Widths(
        16, (192, 384, 768), (48, 96, 192)
    )
    assert widths(ShuffleNetConfig(groups=4, width_mult=0.5)).bottlenecks == (36, 68, 136)
    assert widths(ShuffleNetConfig(groups=3, width_mult=2.0)).stem == 48
    model = create_model("shufflenet_v1_g4", width_mult=0.25, num_classes=5)
    assert model.num_features == 272
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)  # any size through the global pool


def test_small_variant_keeps_32x32_and_is_cheap():
    model = create_model("shufflenet_v1_g3_small")
    assert model.input_size == (3, 32, 32) and model.num_classes == 10
    assert "maxpool" not in model.stages
    summary = summarize(model)
    shapes = {r.name: r.output_shape for r in summary.layers}
    assert shapes["conv1"] == (24, 32, 32)
    assert [shapes[s] for s in ("stage2", "stage3", "stage4")] == [
        (240, 16, 16),
        (480, 8, 8),
        (960, 4, 4),
    ]
    assert summary.total["macs"] < 0.1e9


def test_options_change_the_network():
    plain = create_model("shufflenet_v1_g3_small", norm="none", activation="gelu", dropout=0.2)
    kinds = {type(m) for m in plain.modules()}
    assert nn.BatchNorm2d not in kinds and nn.ReLU not in kinds and nn.GELU in kinds
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(plain.get_classifier()[0], nn.Dropout)
    no_shuffle = create_model("shufflenet_v1_g3_small", shuffle=False)
    assert not any(isinstance(m, ChannelShuffle) for m in no_shuffle.modules())
    assert create_model("shufflenet_v1_g8", stem_channels=16).conv1[0].out_channels == 16


@torch.no_grad()
def test_default_initialisation_uses_the_true_fan_in_of_grouped_convolutions():
    torch.manual_seed(0)
    model = create_model("shufflenet_v1_g8")
    depthwise = torch.cat([u.conv2.weight.flatten() for _, u in units(model)])
    assert depthwise.std().item() == pytest.approx((2 / 9) ** 0.5, rel=0.05)  # fan_in = 9
    grouped = model.stage4[1].conv3.weight  # 384 -> 1536 in 8 groups: fan_in = 48
    assert grouped.std().item() == pytest.approx((2 / 48) ** 0.5, rel=0.05)
    assert model.output.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_recipe_follows_section_4():
    recipe = get_spec("shufflenet_v1_g3").recipe
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.batch_size) == (
        "sgd",
        0.5,
        4e-5,
        1024,
    )
    assert recipe.epochs == round(3e5 * 1024 / 1_281_167) and "linear" in recipe.note
    assert recipe.preprocessing.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize(
    "option",
    [
        {"groups": 5},
        {"width_mult": 0},
        {"width_mult": -1.0},
        {"width_mult": 0.01},
        {"norm": "weird"},
        {"activation": "weird"},
        {"init": "weird"},
        {"dropout": 1.0},
        {"stem_channels": 25},  # not a multiple of g=3
        {"stem_channels": 240},  # leaves no channels for the first unit's branch
    ],
)
def test_bad_options_are_one_line_errors(option):
    with pytest.raises(CnnlabError) as err:
        create_model("shufflenet_v1_g3", **option)
    assert "\n" not in str(err.value) and next(iter(option)) in str(err.value)
