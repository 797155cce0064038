"""The course's operations against PyTorch's own arithmetic and the papers' formulas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ChannelShuffle,
    DepthwiseSeparableConv2d,
    LocalResponseNorm,
    activation_class,
    conv2d,
    conv_output_size,
    depthwise_conv2d,
    init_weights_,
    make_norm,
    same_padding,
)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "dilation"),
    [c for c in itertools.product((7, 8, 32), (1, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2))],
)
def test_output_size_matches_pytorch(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        with pytest.raises(CnnlabError, match="does not fit"):
            conv_output_size(size, kernel, stride, padding, dilation)
        return
    conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation)
    expected = conv(torch.zeros(1, 1, size, size)).shape[-1]
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected


def test_a_filter_that_does_not_fit_is_a_clear_error():
    assert conv_output_size(7, 3, stride=2) == 3  # (7 - 3)/2 + 1
    with pytest.raises(CnnlabError) as e:
        conv_output_size(7, 3, stride=3, strict=True)
    assert "(7 - 3 + 2*0)/3 + 1 = 2.33 is not an integer" in str(e.value)
    assert conv_output_size(7, 3, stride=3) == 2  # what frameworks do: floor
    assert conv_output_size(227, 11, stride=4, strict=True) == 55  # AlexNet's conv1


@pytest.mark.parametrize(
    ("size", "stride", "kernel"), itertools.product((7, 8, 224), (1, 2, 3), (1, 3, 5))
)
def test_same_padding_gives_ceil_of_size_over_stride(size, stride, kernel):
    before, after = same_padding(size, kernel, stride)
    assert conv_output_size(size + before + after, kernel, stride) == math.ceil(size / stride)
    assert 0 <= after - before <= 1
    conv = conv2d(2, 4, kernel, stride=stride, padding="same")
    assert conv(torch.randn(1, 2, size, size)).shape[-2:] == (math.ceil(size / stride),) * 2


def test_convolution_kinds_have_the_expected_parameters():
    assert conv2d(3, 8, 3).weight.shape == (8, 3, 3, 3)  # valid
    assert conv2d(8, 8, 3, groups=2).weight.shape == (8, 4, 3, 3)  # grouped: half the links
    assert conv2d(8, 16, 1).weight.shape == (16, 8, 1, 1)  # 1x1
    assert depthwise_conv2d(8).weight.shape == (8, 1, 3, 3)
    separable = DepthwiseSeparableConv2d(32, 64, 3)
    assert sum(p.numel() for p in separable.parameters()) == 9 * 32 + 32 + 32 * 64 + 64
    y = separable(torch.randn(1, 32, 10, 10))
    assert y.shape == (1, 64, 10, 10)
    dilated = conv2d(1, 1, 3, dilation=2)
    assert dilated(torch.zeros(1, 1, 9, 9)).shape[-1] == 5  # spans 5 inputs
    with pytest.raises(CnnlabError, match="groups=3 must divide"):
        conv2d(8, 8, 3, groups=3)
    with pytest.raises(CnnlabError, match="padding='half'"):
        conv2d(8, 8, 3, padding="half")


def test_lrn_follows_krizhevskys_formula():
    x = torch.randn(2, 7, 3, 3) * 3
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = torch.empty_like(x)
    for c in range(7):
        lo, hi = max(0, c - n // 2), min(6, c + n // 2)
        expected[:, c] = x[:, c] / (k + alpha * (x[:, lo : hi + 1] ** 2).sum(1)) ** beta
    torch.testing.assert_close(LocalResponseNorm()(x), expected)


def test_channel_shuffle_deals_each_groups_channels_to_every_group():
    x = torch.arange(6.0).view(1, 6, 1, 1)  # groups (0 1 2) (3 4 5)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(CnnlabError, match="not divisible"):
        ChannelShuffle(4)(x)


def test_norms_normalise_over_the_right_axes():
    x = torch.randn(4, 8, 5, 5) * 3 + 1
    torch.testing.assert_close(make_norm("layer", 8)(x), F.layer_norm(x, x.shape[1:]))
    torch.testing.assert_close(make_norm("instance", 8)(x), F.instance_norm(x))
    assert isinstance(make_norm("batch", 8), nn.BatchNorm2d)
    assert make_norm("group", 48).num_groups == 24  # the largest divisor of 48 up to 32
    assert isinstance(make_norm("none", 8), nn.Identity)
    with pytest.raises(CnnlabError, match="unknown normalisation 'bn'"):
        make_norm("bn", 8)


def test_activations_by_name():
    assert activation_class("scaled_tanh")()(torch.tensor(1.0)).item() == pytest.approx(1.0, 1e-4)
    assert activation_class("relu")()(torch.tensor(-1.0)).item() == 0
    with pytest.raises(CnnlabError, match="unknown activation 'swish'"):
        activation_class("swish")


@pytest.mark.parametrize(
    ("scheme", "variance"),
    [
        ("lecun_normal", lambda i, o: 1 / i),
        ("xavier_uniform", lambda i, o: 2 / (i + o)),
        ("glorot_normal", lambda i, o: 2 / (i + o)),
        ("he_normal", lambda i, o: 2 / i),
        ("kaiming_uniform", lambda i, o: 2 / i),
        ("normal_0.01", lambda i, o: 1e-4),
    ],
)
def test_init_schemes_set_the_published_variance(scheme, variance):
    torch.manual_seed(0)
    layer = nn.Linear(400, 300)
    init_weights_(layer, scheme)
    assert layer.weight.var().item() == pytest.approx(variance(400, 300), rel=0.05)
    assert torch.all(layer.bias == 0)


def test_unknown_init_scheme_is_a_one_line_error():
    with pytest.raises(CnnlabError, match="unknown initialisation 'glorot'"):
        init_weights_(nn.Linear(2, 2), "glorot")
