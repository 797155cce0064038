"""GoogLeNet against Szegedy et al. 2015: Table 1, Fig. 2(b)/3 and the auxiliary heads
of Section 5."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model, get_spec
from cnnlab.analysis.paper import compare
from cnnlab.analysis.summary import summarize
from cnnlab.data.preprocessing import IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.layers import LocalResponseNorm
from cnnlab.models.googlenet import INCEPTION, TABLE_1, TABLE_1_DISAGREES, TABLE_1_UNITS

# Table 1's "output size" column, for our stages (the LRNs keep the size).
TABLE_1_SHAPES = {
    "conv1": (64, 112, 112),
    "pool1": (64, 56, 56),
    "conv2": (192, 56, 56),
    "pool2": (192, 28, 28),
    "inception3a": (256, 28, 28),
    "inception3b": (480, 28, 28),
    "pool3": (480, 14, 14),
    "inception4a": (512, 14, 14),
    "inception4b": (512, 14, 14),
    "inception4c": (512, 14, 14),
    "inception4d": (528, 14, 14),
    "inception4e": (832, 14, 14),
    "pool4": (832, 7, 7),
    "inception5a": (832, 7, 7),
    "inception5b": (1024, 7, 7),
    "avgpool": (1024, 1, 1),
    "output": (1000,),
}


@pytest.fixture(scope="module")
def paper_net():
    """`googlenet` without auxiliary heads (what Table 1 lists) and its summary."""
    torch.manual_seed(0)
    model = create_model("googlenet", aux_logits=False).eval()
    return model, summarize(model)


@pytest.fixture(scope="module")
def separable_net():
    model = create_model("googlenet", aux_logits=False, conv1="separable").eval()
    return model, summarize(model)


def _table_1_agreement(model, summary) -> dict[tuple[str, str], tuple[float, float]]:
    """(row, column) -> (ours, printed) in Table 1's units, where they differ by > 1 unit."""
    rows = {r.name: r for r in summary.layers}
    modules = dict(model.named_modules())
    off = {}
    for name, printed in TABLE_1.items():
        weights = sum(
            m.weight.numel()
            for m in modules[name].modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        )
        ours = {"params": weights / TABLE_1_UNITS["params"], "ops": rows[name].macs / 1e6}
        for column, text in zip(("params", "ops"), printed, strict=True):
            value = float(text[:-1])
            unit = 10 ** -len(text[:-1].split(".")[1]) if "." in text else 1
            if abs(ours[column] - value) > unit:
                off[(name, column)] = (round(ours[column], 2), value)
    return off


def test_published_figures_match():
    for c in compare("googlenet"):
        assert c.matches, f"{c.figure.quantity}: paper {c.figure.printed}, ours {c.rendered}"


def test_table_1_rows_that_disagree_are_exactly_the_recorded_ones(paper_net):
    off = _table_1_agreement(*paper_net)
    assert set(off) == set(TABLE_1_DISAGREES), off
    assert off[("inception4c", "params")] == (497.5, 463.0)
    assert off[("inception5a", "ops")] == (51.08, 54.0)
    assert off[("conv1", "ops")] == (118.01, 34.0)


def test_separable_conv1_is_what_table_1_counts(separable_net):
    model, summary = separable_net
    off = _table_1_agreement(model, summary)
    assert not {key for key in off if key[0] == "conv1"}, off
    assert set(off) == {k for k in TABLE_1_DISAGREES if k[0] != "conv1"}
    depthwise, pointwise = model.conv1[0], model.conv1[1]
    assert (depthwise.groups, depthwise.out_channels, depthwise.kernel_size) == (3, 24, (7, 7))
    assert depthwise.weight.numel() + pointwise.weight.numel() == 2_712


def test_output_sizes_follow_table_1(paper_net):
    model, summary = paper_net
    shapes = {r.name: r.output_shape for r in summary.layers}
    assert {k: shapes[k] for k in TABLE_1_SHAPES} == TABLE_1_SHAPES
    assert model.num_features == 1024


def test_inception_modules_have_true_5x5_and_table_1_widths(paper_net):
    model, _ = paper_net
    for name, (c1, c3r, c3, c5r, c5, proj) in INCEPTION.items():
        m = getattr(model, name)
        assert m.branch1[0].out_channels == c1
        assert [b[0].kernel_size for b in m.branch3] == [(1, 1), (3, 3)]
        assert [b[0].out_channels for b in m.branch3] == [c3r, c3]
        assert [b[0].kernel_size for b in m.branch5] == [(1, 1), (5, 5)]
        assert [b[0].out_channels for b in m.branch5] == [c5r, c5]
        pool, project = m.branch_pool
        assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 3 and pool.stride == 1
        assert project[0].out_channels == proj


def test_paper_net_has_lrn_relu_and_no_batch_norm(paper_net):
    model, _ = paper_net
    kinds = {type(m) for m in model.modules()}
    assert nn.BatchNorm2d not in kinds and nn.ReLU in kinds
    assert [type(model.lrn1), type(model.lrn2)] == [LocalResponseNorm] * 2
    assert (model.lrn1.size, model.lrn1.alpha, model.lrn1.beta, model.lrn1.k) == (5, 1e-4, 0.75, 2)
    assert model.output[0].p == 0.4


def test_bn_variant_normalises_every_convolution():
    model = create_model("googlenet_bn")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert (
        len(convs) == len(norms) == 3 + 9 * 6 + 2
    )  # conv1, conv2 (reduce, 3x3), inceptions, aux heads
    assert all(c.bias is None for c in convs)
    assert not any(isinstance(m, LocalResponseNorm) for m in model.modules())


def test_auxiliary_heads_follow_section_5():
    model = create_model("googlenet")
    assert model.aux_weight == 0.3
    for head, c_in in zip(model.aux_heads, (512, 528), strict=True):
        assert (head.pool.kernel_size, head.pool.stride) == (5, 3)
        assert (head.conv[0].in_channels, head.conv[0].out_channels) == (c_in, 128)
        assert (head.fc[1].in_features, head.fc[1].out_features) == (128 * 4 * 4, 1024)
        assert head.dropout.p == 0.7 and head.output.out_features == 1000


@torch.no_grad()
def test_forward_with_aux_returns_main_and_two_aux_logits():
    model = create_model("googlenet", num_classes=5).eval()
    x = torch.randn(1, 3, 224, 224)
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (1, 5) and [a.shape for a in aux] == [(1, 5), (1, 5)]
    torch.testing.assert_close(logits, model(x))


def test_aux_losses_reach_every_parameter_and_forward_stays_a_tensor():
    model = create_model("googlenet_small").train()
    x = torch.randn(2, 3, 32, 32)
    assert isinstance(model(x), torch.Tensor)
    logits, aux = model.forward_with_aux(x)
    loss = logits.sum() + model.aux_weight * sum(a.sum() for a in aux)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_without_aux_heads_the_list_is_empty_and_any_size_fits():
    model = create_model("googlenet_small", aux_logits=False).eval()
    assert model.aux_heads == [] and not model.fixed_input_size
    assert not any("aux" in name for name, _ in model.named_modules())
    with torch.no_grad():
        logits, aux = model.forward_with_aux(torch.randn(1, 3, 48, 48))
    assert logits.shape == (1, 10) and aux == []
    assert create_model("googlenet_small").fixed_input_size


def test_reset_classifier_resets_the_aux_heads_last_layers_only():
    model = create_model("googlenet_small")
    head = model.output_aux2
    conv, fc = head.conv[0].weight.clone(), head.fc[1].weight.clone()
    model.reset_classifier(3)
    assert [h.output.out_features for h in model.aux_heads] == [3, 3]
    assert torch.equal(head.conv[0].weight, conv) and torch.equal(head.fc[1].weight, fc)


def test_small_variant_stem_widths_and_cost():
    model = create_model("googlenet_small").eval()
    summary = summarize(model)
    shapes = {r.name: r.output_shape for r in summary.layers}
    assert shapes["conv1"] == (32, 32, 32) and "pool1" not in shapes
    assert shapes["inception3a"] == (128, 16, 16)
    assert shapes["inception4a"] == (256, 8, 8)
    assert shapes["inception5b"] == (512, 4, 4)
    assert model.conv1[0].kernel_size == (3, 3) and model.conv1[0].stride == (1, 1)
    assert model.output_aux1.fc[1].in_features == 64 * 2 * 2
    assert summary.total["macs"] < 0.3e9


def test_options_change_the_network():
    model = create_model("googlenet_small", activation="gelu", dropout=0.0, norm="group")
    kinds = {type(m) for m in model.modules()}
    assert nn.GELU in kinds and nn.ReLU not in kinds and nn.BatchNorm2d not in kinds
    assert nn.GroupNorm in kinds and isinstance(model.output[0], nn.Identity)


def test_recipes():
    recipe = get_spec("googlenet").recipe
    assert (recipe.optimizer, recipe.momentum, recipe.schedule) == ("sgd", 0.9, "step")
    assert recipe.preprocessing == IMAGENET and "4%" in recipe.note
    assert get_spec("googlenet_small").input_size == (3, 32, 32)


@pytest.mark.parametrize(
    "option",
    [
        {"stem": "tiny"},
        {"conv1": "grouped"},
        {"norm": "weird"},
        {"activation": "swish"},
        {"init": "zeros"},
        {"dropout": 1.0},
        {"aux_dropout": -0.1},
        {"width": 0},
    ],
)
def test_bad_options_are_one_line_errors(option):
    (key,) = option
    with pytest.raises(CnnlabError, match=f"{key}="):
        create_model("googlenet_small", **option)
