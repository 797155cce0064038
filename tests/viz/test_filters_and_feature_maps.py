"""First-layer filters, weight histograms and feature maps, on small models of the zoo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.summary import summarize
from cnnlab.errors import CnnlabError
from cnnlab.models.classifier import Classifier
from cnnlab.viz.feature_maps import channel_grid, feature_maps, plot_feature_maps
from cnnlab.viz.filters import (
    filter_grid,
    first_conv,
    layer_weights,
    plot_filters,
    plot_weight_histograms,
)


def _no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return all(torch.equal(after[k], v) for k, v in before.items())


class Swapped(Classifier):
    """`late` is registered first but runs second; its output is then changed in place."""

    stages = ("early", "late")

    def __init__(self) -> None:
        super().__init__(None, num_classes=2, input_size=(3, 12, 12))
        self.late = nn.Conv2d(4, 8, 3)
        self.early = nn.Conv2d(3, 4, 3)
        self.output = nn.Linear(8, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.late(self.early(x)))  # (N, 8, 8, 8), rectified in place
        return x.mean(dim=(2, 3))

    def reset_classifier(self, num_classes: int) -> None:
        self.output = nn.Linear(8, num_classes)


# ---- first convolution ---------------------------------------------------------------


def test_first_conv_of_lenet5_is_c1_and_model_is_left_as_it_was():
    model = create_model("lenet5_modern").train()  # batch norm: statistics must not move
    before = _state(model)
    name, weight = first_conv(model)
    assert name == "c1.0"
    assert weight.shape == (6, 1, 5, 5)
    assert torch.equal(weight, model.c1[0].weight.detach())
    assert model.training and _no_hooks(model) and _same_state(model, before)


def test_first_conv_is_found_by_execution_order_not_registration_order():
    model = Swapped()
    assert next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) == "late"
    name, weight = first_conv(model)
    assert name == "early"
    assert weight.shape == (4, 3, 3, 3)


def test_first_conv_of_a_model_without_convolutions_is_an_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(CnnlabError, match="no convolution"):
        first_conv(model, input_size=(3, 2, 2))


# ---- filter grid -----------------------------------------------------------------------


def test_lenet5_c1_grid_is_six_grey_5x5_tiles_with_borders():
    model = create_model("lenet5")
    _, weight = first_conv(model)
    grid = filter_grid(weight)
    # 6 filters in 2 rows of 3 tiles of 5x5, a 1-pixel border around every tile
    assert grid.shape == (2 * 5 + 3, 3 * 5 + 4)
    assert grid.dtype == np.float32 and grid.min() >= 0 and grid.max() <= 1
    w = weight.numpy()
    for i in range(6):
        r, c = divmod(i, 3)
        tile = grid[1 + 6 * r : 6 + 6 * r, 1 + 6 * c : 6 + 6 * c]
        expected = (w[i, 0] - w[i].min()) / (w[i].max() - w[i].min())  # per filter
        np.testing.assert_allclose(tile, expected, atol=1e-6)
        assert tile.min() == 0 and tile.max() == pytest.approx(1)
    borders = np.ones(grid.shape, bool)
    for r in range(2):
        for c in range(3):
            borders[1 + 6 * r : 6 + 6 * r, 1 + 6 * c : 6 + 6 * c] = False
    assert (grid[borders] == 1).all()


@pytest.mark.parametrize(
    ("name", "out", "k", "cols"), [("alexnet_small", 48, 5, 7), ("resnet20", 16, 3, 4)]
)
def test_three_channel_first_conv_is_shown_in_colour(name, out, k, cols):
    _, weight = first_conv(create_model(name))
    assert weight.shape == (out, 3, k, k)
    grid = filter_grid(weight)
    rows = -(-out // cols)
    assert grid.shape == (rows * (k + 1) + 1, cols * (k + 1) + 1, 3)
    tile = grid[1 : 1 + k, 1 : 1 + k]  # filter 0, (k, k, RGB)
    w = weight[0].numpy()
    np.testing.assert_allclose(
        tile, ((w - w.min()) / (w.max() - w.min())).transpose(1, 2, 0), atol=1e-6
    )
    assert not np.allclose(tile[..., 0], tile[..., 1])  # the channels differ: colour


def test_one_and_three_channel_lenet():
    grey = filter_grid(first_conv(create_model("lenet5", in_chans=1))[1])
    colour = filter_grid(first_conv(create_model("lenet5", in_chans=3))[1])
    assert grey.shape == (13, 19)
    assert colour.shape == (13, 19, 3)


def test_other_channel_counts_give_one_grey_tile_per_filter_and_channel():
    weight = torch.randn(4, 2, 3, 3)
    grid = filter_grid(weight)
    assert grid.shape == (4 * 4 + 1, 2 * 4 + 1)  # one row per filter, one column per channel
    w = weight.numpy()
    row2 = (w[2] - w[2].min()) / (w[2].max() - w[2].min())  # scaled over both channels
    np.testing.assert_allclose(grid[9:12, 1:4], row2[0], atol=1e-6)
    np.testing.assert_allclose(grid[9:12, 5:8], row2[1], atol=1e-6)


def test_constant_filter_is_mid_grey_and_bad_shapes_are_errors():
    weight = torch.zeros(2, 1, 3, 3)
    weight[1] = torch.arange(9.0).view(3, 3)
    grid = filter_grid(weight)
    assert (grid[1:4, 1:4] == 0.5).all()
    with pytest.raises(CnnlabError, match=r"\(out, in, kh, kw\)"):
        filter_grid(torch.zeros(3, 5))


def test_plot_filters_names_the_layer():
    fig = plot_filters(create_model("lenet5"), title="lenet5")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.images[0].get_array().shape == (13, 19)
    assert "c1.0: 6 filters of 1x5x5" in ax.get_title()


# ---- weight histograms ---------------------------------------------------------------


def test_histograms_have_one_axis_per_layer_in_forward_order():
    model = create_model("lenet5")
    fig = plot_weight_histograms(model)
    assert len(fig.axes) == 5  # c1, c3, c5 convolutions, f6 and output linear layers
    titles = [ax.get_title().split(" ")[0] for ax in fig.axes]
    assert titles == ["c1.0", "c3.0", "c5.0", "f6.1", "output.1"]
    assert _no_hooks(model)


def test_connection_table_kernels_count_as_one_layer():
    layers = layer_weights(create_model("lenet5_1998"))
    names = [n for n, _, _ in layers]
    assert names == ["c1.0", "c3.0", "c5.0", "f6.1"]  # the RBF prototypes are a buffer
    assert layers[1][2].numel() == 60 * 25  # the 60 links of Table I, 5x5 each


def test_deep_nets_show_at_most_the_cap_of_evenly_spaced_layers():
    model = create_model("resnet20")
    assert len(layer_weights(model)) == 20  # 19 convolutions and the classifier
    fig = plot_weight_histograms(model)  # the default cap, 16
    assert len(fig.axes) == 16
    assert "16 of 20 layers" in fig.texts[0].get_text()  # the suptitle says so
    fig = plot_weight_histograms(model, max_panels=8)
    assert len(fig.axes) == 8
    assert "8 of 20 layers" in fig.texts[0].get_text()
    titles = [ax.get_title().split(" ")[0] for ax in fig.axes]
    assert titles[0] == "stem.0" and titles[-1] == "output"
    assert len(set(titles)) == 8


# ---- feature maps --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "densenet40_k12", "alexnet_small"])
def test_feature_maps_have_the_summary_shapes(name):
    model = create_model(name).eval()
    x = torch.randn(1, *model.input_size)
    maps = feature_maps(model, x)
    assert list(maps) == list(model.stages)
    rows = {r.name: r.output_shape for r in summarize(model).layers}
    compared = 0
    for stage, fmap in maps.items():
        assert fmap.ndim == 3 and fmap.dtype == torch.float32 and not fmap.requires_grad
        if stage in rows:
            assert tuple(fmap.shape) == rows[stage], stage
            compared += 1
    assert compared == len(model.stages)  # every stage is a row of the summary here
    assert _no_hooks(model) and not model.training


def test_feature_maps_equal_a_manual_forward_and_leave_the_mode():
    model = create_model("lenet5").train()
    x = torch.randn(1, 1, 32, 32)
    maps = feature_maps(model, x[0])  # (C, H, W) is accepted too
    with torch.no_grad():
        c1 = model.c1(x)
        s2 = model.s2(c1)
    torch.testing.assert_close(maps["c1"], c1[0])
    torch.testing.assert_close(maps["s2"], s2[0])
    assert maps["c5"].shape == (120, 1, 1)
    assert model.training and _no_hooks(model)


def test_feature_maps_are_copies_taken_before_later_in_place_ops():
    model = Swapped().eval()
    x = torch.randn(1, 3, 12, 12)
    maps = feature_maps(model, x)
    with torch.no_grad():
        late = model.late(model.early(x))[0]
    assert (late < 0).any()
    torch.testing.assert_close(maps["late"], late)  # not the rectified tensor


def test_feature_map_errors_name_what_was_received():
    model = create_model("lenet5").eval()
    with pytest.raises(CnnlabError, match="one example"):
        feature_maps(model, torch.zeros(2, 1, 32, 32))
    with pytest.raises(CnnlabError, match="unknown stage 'c9'"):
        feature_maps(model, torch.zeros(1, 1, 32, 32), stages=["c1", "c9"])
    with pytest.raises(CnnlabError, match=r"'f6'.*not an \(N, C, H, W\)"):
        feature_maps(model, torch.zeros(1, 1, 32, 32), stages=["f6"])
    assert _no_hooks(model)


def test_plot_feature_maps_one_panel_per_stage_at_most_max_channels():
    model = create_model("lenet5").eval()
    maps = feature_maps(model, torch.randn(1, 1, 32, 32))
    fig = plot_feature_maps(maps, max_channels=8, ncols=4)
    assert len(fig.axes) == len(model.stages)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "c1: 6x28x28"
    assert titles[2] == "c3: 16x10x10 (first 8 of 16 channels)"
    shapes = [ax.images[0].get_array().shape for ax in fig.axes]
    assert shapes[0] == (2 * 29 + 1, 4 * 29 + 1)  # 6 channels, 4 to a row
    assert shapes[2] == (2 * 11 + 1, 4 * 11 + 1)  # 8 of 16 channels
    assert shapes[4] == (2 * 2 + 1, 4 * 2 + 1)  # c5: 8 of 120 1x1 maps
    grid = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    assert np.isnan(grid[0]).all() and np.isnan(grid[:, 0]).all()  # borders: drawn apart
    assert np.nanmin(grid) == 0 and np.nanmax(grid) == 1
    np.testing.assert_allclose(grid[1:29, 1:29], channel_grid(maps["c1"], 1, 1)[1:-1, 1:-1])
