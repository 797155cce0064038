"""VGG against Simonyan and Zisserman 2015: Table 1's configurations, Table 2's
parameter counts, Section 2.3's stacks of 3x3 convolutions, Section 3.1's recipe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model, get_spec
from cnnlab.analysis.paper import compare, measure
from cnnlab.data.preprocessing import IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.layers import LocalResponseNorm

PAPER_NETS = ("vgg11", "vgg11_lrn", "vgg13", "vgg16_1x1", "vgg16", "vgg19")
SMALL = 8  # fc_width for structural checks: the 100M FC weights are not needed there

# Table 1, transcribed independently of the model file: per block, the convolutions
# as (kernel, channels); the blocks end with the five max pools.
B12 = [[(3, 64)] * 2, [(3, 128)] * 2]
TABLE_1 = {
    "vgg11": [[(3, 64)], [(3, 128)], [(3, 256)] * 2, [(3, 512)] * 2, [(3, 512)] * 2],
    "vgg13": [*B12, [(3, 256)] * 2, [(3, 512)] * 2, [(3, 512)] * 2],
    "vgg16_1x1": [
        *B12,
        [(3, 256), (3, 256), (1, 256)],
        [(3, 512), (3, 512), (1, 512)],
        [(3, 512), (3, 512), (1, 512)],
    ],
    "vgg16": [*B12, [(3, 256)] * 3, [(3, 512)] * 3, [(3, 512)] * 3],
    "vgg19": [*B12, [(3, 256)] * 4, [(3, 512)] * 4, [(3, 512)] * 4],
}
TABLE_1["vgg11_lrn"] = TABLE_1["vgg11"]
WEIGHT_LAYERS = {"vgg11": 11, "vgg11_lrn": 11, "vgg13": 13, "vgg16_1x1": 16, "vgg16": 16}
WEIGHT_LAYERS["vgg19"] = 19


def _convs_per_block(model: nn.Module) -> list[list[tuple[int, int]]]:
    """(kernel, channels) of every convolution, per stage."""
    blocks = [getattr(model, s).modules() for s in model.stages]
    return [
        [(m.kernel_size[0], m.out_channels) for m in b if isinstance(m, nn.Conv2d)] for b in blocks
    ]


@pytest.mark.parametrize("name", PAPER_NETS)
def test_table_2_parameter_counts(name):
    for c in compare(name):
        assert c.matches, f"{name} {c.figure.source}: paper {c.figure.printed}, ours {c.rendered}"


@pytest.mark.parametrize("suffix", ["", "_bn"])
@pytest.mark.parametrize("name", PAPER_NETS)
def test_configurations_follow_table_1(name, suffix):
    model = create_model(name + suffix, fc_width=SMALL)
    assert _convs_per_block(model) == TABLE_1[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == WEIGHT_LAYERS[name]  # the "weight layers" of Table 1
    assert all(m.stride == (1, 1) and m.padding == (m.kernel_size[0] // 2,) * 2 for m in convs)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == (len(convs) if suffix else 0)
    lrns = [m for m in model.modules() if isinstance(m, LocalResponseNorm)]
    assert len(lrns) == (1 if name == "vgg11_lrn" else 0)


def test_a_lrn_normalises_after_the_first_convolution_as_krizhevsky():
    model = create_model("vgg11_lrn", fc_width=SMALL)
    assert list(dict(model.block1.named_children())) == ["conv1", "lrn"]
    assert isinstance(model.block1.conv1.act, nn.ReLU)  # conv -> ReLU -> LRN
    lrn = model.block1.lrn
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)


def test_batch_norm_sits_between_each_convolution_and_its_relu():
    unit = create_model("vgg16_bn", fc_width=SMALL).block3.conv2
    assert [type(m) for m in unit] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


@torch.no_grad()
def test_feature_map_sizes_and_classifier_of_vgg16():
    model = create_model("vgg16", fc_width=SMALL).eval()
    seen = {}
    for stage in model.stages:
        getattr(model, stage).register_forward_hook(
            lambda m, i, o, s=stage: seen.__setitem__(s, tuple(o.shape[1:]))
        )
    model(torch.randn(1, 3, 224, 224))
    assert list(seen.values()) == [
        (64, 224, 224),
        (128, 112, 112),
        (256, 56, 56),
        (512, 28, 28),
        (512, 14, 14),
    ]
    assert model.fc1[0].in_features == 512 * 7 * 7


def test_classifier_is_fc4096_fc4096_fc1000_with_dropout_on_the_first_two():
    model = create_model("vgg16", init="default")
    assert [type(m) for m in model.fc1] == [nn.Linear, nn.ReLU, nn.Dropout]
    assert [type(m) for m in model.fc2] == [nn.Linear, nn.ReLU, nn.Dropout]
    assert model.fc1[2].p == model.fc2[2].p == 0.5
    assert (model.fc2[0].out_features, model.output.in_features) == (4096, 4096)
    assert model.output.out_features == 1000 and model.num_features == 4096
    assert not any(isinstance(m, nn.Dropout) for m in model.output.modules())
    no_dropout = create_model("vgg11", fc_width=SMALL, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())


def test_paper_initialisation_draws_weights_with_std_0_01_and_zero_biases():
    torch.manual_seed(0)
    model = create_model("vgg11", fc_width=SMALL)  # configuration A: init="paper"
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.01, rel=0.01)
    assert weights.mean().abs().item() < 1e-4
    biases = [m.bias for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(torch.count_nonzero(b) == 0 for b in biases)
    model.reset_classifier(500)  # enough weights for a stable estimate
    assert model.output.weight.std().item() == pytest.approx(0.01, rel=0.2)


def test_deeper_configurations_start_from_glorot_and_bn_ones_from_the_paper_scheme():
    conv = create_model("vgg16", fc_width=SMALL).block3.conv2.conv  # 256 -> 256 maps, 3x3
    bound = (6 / (2 * 256 * 9)) ** 0.5  # Glorot and Bengio's uniform bound
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.02)
    conv = create_model("vgg16_bn", fc_width=SMALL).block3.conv2.conv
    assert conv.weight.std().item() == pytest.approx(0.01, rel=0.02)


def test_options_change_the_layers():
    model = create_model("vgg11", fc_width=SMALL, norm="group", activation="gelu")
    unit = model.block4.conv1
    assert isinstance(unit.norm, nn.GroupNorm) and isinstance(unit.act, nn.GELU)
    assert isinstance(model.fc1[1], nn.GELU)
    kaiming = create_model("vgg11", fc_width=SMALL, init="kaiming_normal").block4.conv1.conv
    assert kaiming.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.02)


@pytest.mark.parametrize(
    "option",
    [
        {"configuration": "F"},
        {"norm": "lrn"},
        {"activation": "swish"},
        {"dropout": 1.0},
        {"fc_width": 0},
        {"init": "orthogonal"},
    ],
)
def test_bad_option_values_are_one_line_errors(option):
    with pytest.raises(CnnlabError, match=next(iter(option))):
        create_model("vgg11", **option)


@pytest.mark.parametrize(
    ("name", "ref"), [("vgg11_bn_small", "vgg11"), ("vgg16_bn_small", "vgg16")]
)
@torch.no_grad()
def test_small_variants_keep_the_convolutions_and_shrink_the_classifier(name, ref):
    model = create_model(name).eval()
    assert model.input_size == (3, 32, 32) and model.num_classes == 10
    assert _convs_per_block(model) == TABLE_1[ref]
    seen = {}
    model.pool5.register_forward_hook(lambda m, i, o: seen.__setitem__("pool5", o.shape))
    model(torch.randn(1, 3, 32, 32))
    assert tuple(seen["pool5"]) == (1, 512, 1, 1)  # the five pools bring 32 to 1
    fcs = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert fcs == [(512, 512), (512, 512), (512, 10)]
    assert measure(model, (3, 32, 32))["macs"] < 0.35e9


def _receptive_field(stack: nn.Module, size: int = 15) -> int:
    """Width of the input region that reaches the centre output unit (by its gradient)."""
    x = torch.rand(1, 1, size, size, requires_grad=True)
    stack(x)[0, 0, size // 2, size // 2].backward()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0))
    return int(cols.max() - cols.min() + 1)


def _stack(channels: int, kernel: int, depth: int) -> nn.Sequential:
    """`depth` convolutions of `channels` maps, padded as VGG pads them."""
    return nn.Sequential(
        *(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
            for _ in range(depth)
        )
    )


@pytest.mark.parametrize(("depth", "field"), [(2, 5), (3, 7)])
def test_stacked_3x3_convolutions_see_as_far_as_one_larger_kernel_with_fewer_weights(depth, field):
    """Section 2.3: two 3x3 layers see 5x5, three see 7x7; 27C^2 weights against 49C^2."""
    for layer in (stack := _stack(1, 3, depth)):
        nn.init.constant_(layer.weight, 1.0)
    single = _stack(1, field, 1)
    nn.init.constant_(single[0].weight, 1.0)
    assert _receptive_field(stack) == _receptive_field(single) == field
    c = 64
    stacked = sum(p.numel() for p in _stack(c, 3, depth).parameters())
    one = sum(p.numel() for p in _stack(c, field, 1).parameters())
    assert stacked == depth * 9 * c * c and one == field * field * c * c
    if depth == 3:
        assert (stacked, one) == (27 * c * c, 49 * c * c)
        assert one / stacked - 1 == pytest.approx(0.81, abs=0.005)  # "i.e. 81% more"


def test_faithful_recipe_is_section_3_1():
    for name in PAPER_NETS:
        r = get_spec(name).recipe
        assert (r.optimizer, r.lr, r.momentum, r.weight_decay) == ("sgd", 0.01, 0.9, 5e-4)
        assert (r.batch_size, r.epochs, r.schedule) == (256, 74, "multistep")
        assert len(r.milestones) == 3 and r.gamma == 0.1  # "decreased by a factor of 10" x3
        assert r.preprocessing == IMAGENET and "scale" in r.note
