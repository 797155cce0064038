"""`cnnlab experiment depth`: the ablated networks, and the small budget on real CIFAR-10."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from cnnlab.experiments.depth import ABLATIONS, FC_WIDTH, MODEL, WIDTHS, build
from cnnlab.registry import create_model


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_the_full_network_is_the_registered_one_and_each_removal_drops_its_layers():
    torch.manual_seed(0)
    registered = create_model(MODEL, num_classes=10, in_chans=3, widths=WIDTHS, fc_width=FC_WIDTH)
    full = build(())
    assert full.state_dict().keys() == registered.state_dict().keys()
    for a, b in zip(full.state_dict().values(), registered.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same seed draws the same network
    x = torch.randn(2, 3, 32, 32)
    widths = {}
    for removed in ABLATIONS.values():
        model = build(removed).eval()
        assert model(x).shape == (2, 10)
        layers = _weight_layers(model)
        assert len(layers) == 8 - len(removed)
        widths[removed] = [m.weight.shape[0] for m in layers]
    c1, c2, c3, c4, c5 = WIDTHS
    assert widths[()] == [c1, c2, c3, c4, c5, FC_WIDTH, FC_WIDTH, 10]
    assert widths[(7,)] == [c1, c2, c3, c4, c5, FC_WIDTH, 10]
    assert widths[(6, 7)] == [c1, c2, c3, c4, c5, 10]
    assert widths[(3, 4)] == [c1, c2, c5, FC_WIDTH, FC_WIDTH, 10]
    assert widths[(3, 4, 6, 7)] == [c1, c2, c5, 10]
    conv5 = _weight_layers(build((3, 4)))[2]
    assert conv5.in_channels == c2  # conv5 reads conv2's maps
    # every remaining convolution keeps alexnet_small's batch norm
    assert sum(isinstance(m, nn.BatchNorm2d) for m in build((3, 4, 6, 7)).modules()) == 3


@pytest.mark.slow
def test_the_report_gives_each_change_against_the_full_network_and_the_verdict_adds_them(
    cifar10_env, run_experiment
):
    verdict, report, out = run_experiment("depth")
    rows = {
        name: (int(layers), float(train), float(test), float(change))
        for name, layers, train, test, change in re.findall(
            r"\| (full|without [\d, layers]+?) \| (\d) \| [\d,]+ \| [\d.]+ M \| ([\d.]+)% "
            r"\| ([\d.]+)% \| ([+-][\d.]+) \|",
            report,
        )
    }
    assert list(rows) == list(ABLATIONS), report
    full_test = rows["full"][2]
    for name, (layers, train, test, change) in rows.items():
        assert layers == 8 - len(ABLATIONS[name])
        assert abs((test - full_test) - change) < 0.011
        assert max(train, test) < 80  # every network learned something (chance: 90%)
    fc, middle, both = (rows[n][3] for n in list(ABLATIONS)[2:])
    assert verdict.startswith(
        f"depth: removing layers 6 and 7 changed the test error by {fc:+.2f} points, "
        f"layers 3 and 4 by {middle:+.2f}, all four by {both:+.2f}: "
    )
    if abs(both - (fc + middle)) > 0.02:  # the report's rounding cannot decide it
        more = both > fc + middle
        assert ("no worse than the two removals" in verdict) == (not more)
    assert (out / "depth.png").is_file()
