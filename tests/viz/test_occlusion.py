"""Occlusion sensitivity (Zeiler and Fergus 2014, Section 4.2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import Occlusion
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model
from cnnlab.viz.occlusion import default_patch, occlusion


def _model(name: str) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model(name).eval()


class _OnePixel(nn.Module):
    """Two classes; only pixel (r, c) of channel 0 matters: logits (5 x[r, c], 0)."""

    def __init__(self, r: int, c: int) -> None:
        super().__init__()
        self.r, self.c = r, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = 5 * x[:, 0, self.r, self.c]
        return torch.stack([v, torch.zeros_like(v)], dim=1)


def test_the_map_drops_exactly_where_a_square_covers_the_pixel_that_matters():
    model = _OnePixel(5, 9)
    x = torch.ones(1, 2, 30, 30)  # 30 is not a multiple of the stride: last square at 23
    result = occlusion(model, x, target=0, patch=7, stride=4, fill=-1.0)
    p_clean = torch.softmax(torch.tensor([5.0, 0.0]), 0)[0]
    p_occluded = torch.softmax(torch.tensor([-5.0, 0.0]), 0)[0]
    starts = [0, 4, 8, 12, 16, 20, 23]
    rows = [r for r in starts if r <= 5 < r + 7]  # squares covering pixel (5, 9)
    cols = [c for c in starts if c <= 9 < c + 7]
    expected = torch.zeros(30, 30, dtype=torch.float64)
    count = torch.zeros(30, 30, dtype=torch.float64)
    for r in starts:
        for c in starts:
            hit = r in rows and c in cols
            expected[r : r + 7, c : c + 7] += float(p_occluded if hit else p_clean)
            count[r : r + 7, c : c + 7] += 1
    assert result.shape == (1, 30, 30) and result.dtype == torch.float32
    torch.testing.assert_close(result[0], (expected / count).float())
    assert result[0, 5, 9] < result[0, 20, 20] == pytest.approx(p_clean.item())


def test_defaults_and_fill():
    assert default_patch(32, 32) == 8 and default_patch(224, 224) == 56 and default_patch(2, 9) == 1
    model = _model("lenet5")
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    default = occlusion(model, x)
    torch.testing.assert_close(default, occlusion(model, x, patch=8, stride=4, fill=0.0))
    assert not torch.equal(default, occlusion(model, x, fill=1.0))
    # Batching changes nothing; a fill per channel is accepted.
    torch.testing.assert_close(default, occlusion(model, x, batch_size=5))
    rgb = _model("resnet20")
    y = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(occlusion(rgb, y, fill=[0.5, 0.5, 0.5]), occlusion(rgb, y, fill=0.5))


def test_errors():
    model = _model("lenet5")
    x = torch.randn(1, 1, 32, 32)
    for kwargs, words in [
        ({"patch": 33}, "patch=33: expected a side from 1 to 32"),
        ({"stride": 0}, "stride=0"),
        ({"fill": [0.0, 1.0]}, "fill has 2 values: expected 1 or 1"),
        ({"target": 10}, "out of range"),
    ]:
        with pytest.raises(CnnlabError, match=words):
            occlusion(model, x, **kwargs)


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_drop_equals_captum_occlusion_of_the_softmax(name):
    """Captum's attribution is the mean over covering squares of p_clean - p_occluded."""
    model = _model(name)
    c = model.input_size[0]
    x = torch.randn(2, *model.input_size, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([2, 6])
    ours = occlusion(model, x, target, patch=8, stride=4, fill=0.0)

    def probabilities(inp: torch.Tensor) -> torch.Tensor:
        return model(inp).softmax(dim=1)

    reference = Occlusion(probabilities).attribute(
        x, sliding_window_shapes=(c, 8, 8), strides=(c, 4, 4), baselines=0.0, target=target
    )  # (N, C, H, W), equal over channels
    with torch.no_grad():
        p_clean = probabilities(x).gather(1, target.view(-1, 1)).view(-1, 1, 1)
    assert (p_clean - ours - reference[:, 0]).abs().max().item() <= 1e-5


def _digit_pixels(raw: torch.Tensor) -> torch.Tensor:
    """The digit's ink, raw > 0 after padding 28 -> 32 as the preprocessing does, dilated by 1."""
    ink = (F.pad(raw, (2, 2, 2, 2)) > 0).float()  # (N, 1, 32, 32)
    return F.max_pool2d(ink, 3, stride=1, padding=1)[:, 0] > 0  # (N, 32, 32)


def test_the_drop_in_probability_lies_on_the_digit(trained_lenet):
    """Most of the map's mass (the drop p_clean - p_occluded, clipped at 0) is on the ink.

    4x4 squares at stride 2: about the width of a stroke (the default 8x8 squares give
    0.55 with the same measure). A uniform map would put ~0.23 of its mass on the ink.
    """
    model, x, labels = trained_lenet.model, trained_lenet.images, trained_lenet.labels
    with torch.no_grad():
        p_clean = model(x).softmax(dim=1).gather(1, labels.view(-1, 1)).view(-1, 1, 1)
    drop = (p_clean - occlusion(model, x, labels, patch=4, stride=2)).clamp(min=0)  # (16, 32, 32)
    digit = _digit_pixels(trained_lenet.raw)
    per_digit = (drop * digit).sum(dim=(1, 2)) / drop.sum(dim=(1, 2)).clamp(min=1e-12)
    fraction = per_digit.mean().item()
    uniform = digit.float().mean().item()
    assert fraction > 0.5, f"mass on the digit {fraction:.3f} (uniform map: {uniform:.3f})"
    assert fraction > 2 * uniform, f"mass on the digit {fraction:.3f} (uniform map: {uniform:.3f})"
