"""Back to pixels, maps over images, and the explanation figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cnnlab.data.preprocessing import CIFAR10, MNIST_32, Preprocessing
from cnnlab.errors import CnnlabError
from cnnlab.models.lenet import LENET_1998_INPUT
from cnnlab.viz.overlay import heatmap_overlay, plot_explanation, to_display, top_classes_text


@pytest.fixture
def raw() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)


# ---- to_display ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prep", [MNIST_32, LENET_1998_INPUT, Preprocessing(mode="unit", pad_to=32)], ids=str
)
def test_to_display_inverts_each_preprocessing_mode(raw, prep):
    x = prep(raw)  # (2, 1, 32, 32): padded with background
    shown = to_display(x, prep)
    assert shown.shape == x.shape and shown.dtype == torch.float32
    torch.testing.assert_close(shown[:, :, 2:30, 2:30], raw.float() / 255, atol=1e-6, rtol=0)
    assert (shown[:, :, :2] == 0).all()  # the padding is background, pixel 0
    torch.testing.assert_close(to_display(x[0], prep), shown[0])  # (C, H, W) too


def test_to_display_per_channel_and_zero_is_the_mean():
    raw = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    shown = to_display(CIFAR10(raw), CIFAR10)
    torch.testing.assert_close(shown, raw.float() / 255, atol=1e-6, rtol=0)
    zero = to_display(torch.zeros(3, 4, 4), CIFAR10)
    torch.testing.assert_close(zero[:, 0, 0], torch.tensor(CIFAR10.mean))


def test_to_display_clips_or_stretches():
    x = torch.tensor([[[-10.0, 0.0], [1.0, 10.0]]])  # (1, 2, 2), far outside the pixel range
    clipped = to_display(x, MNIST_32)
    assert clipped.min() == 0 and clipped.max() == 1
    stretched = to_display(x, MNIST_32, stretch=True)
    assert stretched.min() == 0 and stretched.max() == 1
    assert 0 < stretched[0, 0, 1] < stretched[0, 1, 0] < 1  # the order survives
    assert (to_display(torch.ones(1, 2, 2), MNIST_32, stretch=True) == 0).all()
    with pytest.raises(CnnlabError, match="2 channel"):
        to_display(torch.zeros(2, 4, 4), CIFAR10)


# ---- heatmap_overlay -------------------------------------------------------------------


def test_overlay_shape_range_and_zero_map_leaves_the_image():
    image = torch.rand(1, 16, 12)
    out = heatmap_overlay(image, np.zeros((16, 12)))
    assert out.shape == (16, 12, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.repeat(image.numpy().transpose(1, 2, 0), 3, 2), atol=1e-6)
    np.testing.assert_allclose(heatmap_overlay(image, torch.full((16, 12), 7.0)), out)
    colour = torch.rand(3, 16, 12)
    np.testing.assert_allclose(
        heatmap_overlay(colour, torch.zeros(16, 12)), colour.numpy().transpose(1, 2, 0), atol=1e-6
    )


def test_overlay_colours_where_the_map_is_high():
    image = torch.full((1, 8, 8), 0.5)
    heat = torch.zeros(8, 8)
    heat[2, 3] = 5.0
    heat[6, 6] = 2.5
    out = heatmap_overlay(image, heat, alpha=0.5, cmap="jet")
    assert out.min() >= 0 and out.max() <= 1
    assert np.allclose(out[0, 0], 0.5)  # map 0: the image
    # map 1 (normalised): half image, half jet's top colour (dark red)
    np.testing.assert_allclose(out[2, 3], 0.25 + 0.5 * np.array([0.5, 0.0, 0.0]), atol=0.01)
    assert not np.allclose(out[6, 6], 0.5)  # a map of 0.5: a quarter of jet's green
    low = heatmap_overlay(image, torch.rand(2, 2), alpha=0.5)  # a coarse map is resized
    assert low.shape == (8, 8, 3)


def test_overlay_errors():
    with pytest.raises(CnnlabError, match=r"expected display pixels in \[0, 1\]"):
        heatmap_overlay(torch.full((1, 4, 4), 2.0), torch.zeros(4, 4))
    with pytest.raises(CnnlabError, match="1 or 3 channels"):
        heatmap_overlay(torch.zeros(2, 4, 4), torch.zeros(4, 4))
    with pytest.raises(CnnlabError, match="alpha"):
        heatmap_overlay(torch.zeros(1, 4, 4), torch.zeros(4, 4), alpha=2)


# ---- plot_explanation ------------------------------------------------------------------


def test_top_classes_text():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    texts = top_classes_text(logits, ["cat", "dog", "car"], k=2)
    assert texts[0].splitlines() == ["dog: 97.6%", "car: 1.8%"]
    assert texts[1].startswith("cat: ")


def test_plot_explanation_axes():
    images = torch.rand(2, 1, 32, 32)
    maps = torch.rand(2, 32, 32)
    fig = plot_explanation(images, ["7: 99%", "2: 80%"], maps, maps, extra={"occlusion": maps})
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 5  # input, prediction, saliency, Grad-CAM, occlusion
    assert [ax.get_title() for ax in fig.axes[:5]] == [
        "input",
        "prediction",
        "saliency",
        "Grad-CAM",
        "occlusion",
    ]
    assert fig.axes[1].texts[0].get_text() == "7: 99%"
    one = plot_explanation(torch.rand(3, 32, 32), "cat: 90%", maps[0].numpy(), None)
    assert len(one.axes) == 3  # no Grad-CAM column
    with pytest.raises(CnnlabError, match="1 prediction texts for 2 images"):
        plot_explanation(images, ["7"], maps, maps)
    with pytest.raises(CnnlabError, match="saliency of shape"):
        plot_explanation(images, ["7", "2"], maps[:1].repeat(3, 1, 1), maps)
