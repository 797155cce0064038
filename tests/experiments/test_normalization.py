"""`cnnlab experiment normalization`: the six networks, and the small budget on real MNIST."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from cnnlab.experiments.normalization import BUDGETS, NORMS, TRAINS_BELOW, build
from cnnlab.layers import LocalResponseNorm


def test_the_six_networks_differ_only_in_their_normalisation():
    kinds = {}
    for norm in NORMS:
        model = build(norm)
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs] == [16, 16, 16, 32, 32, 64, 64]
        assert all((c.bias is not None) == (norm in ("none", "lrn")) for c in convs)
        kinds[norm] = [
            type(m).__name__
            for m in model.modules()
            if isinstance(m, nn.BatchNorm2d | nn.GroupNorm | LocalResponseNorm)
        ]
    assert kinds["none"] == []
    assert kinds["batch"] == ["BatchNorm2d"] * 7
    assert kinds["layer"] == kinds["instance"] == kinds["group"] == ["GroupNorm"] * 7
    assert kinds["lrn"] == ["LocalResponseNorm"] * 2  # after conv1's and conv2's ReLU
    groups = {
        norm: [m.num_groups for m in build(norm).modules() if isinstance(m, nn.GroupNorm)]
        for norm in ("layer", "instance", "group")
    }
    assert groups["layer"] == [1] * 7
    assert groups["instance"] == [16, 16, 16, 32, 32, 64, 64]
    assert groups["group"] == [16, 16, 16, 32, 32, 32, 32]  # 32 groups, at most one per map


def _table(report: str, header: str) -> dict[str, list[str]]:
    """The rows of the Markdown table whose header line starts with `header`: name -> cells."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name, *cells = (c.strip() for c in line.strip("|").split("|"))
        rows[name] = cells
    return rows


def _percent(cell: str) -> float:
    return float(re.fullmatch(r"([\d.]+)%( \(no\))?", cell).group(1)) / 100


@pytest.mark.slow
def test_the_sweep_stops_where_it_should_and_the_verdict_follows_the_limits(
    mnist_env, run_experiment
):
    verdict, report, out = run_experiment("normalization")
    budget = BUDGETS["small"]
    rates, epochs = budget.rates, budget.epochs

    sweep = _table(report, "| normalisation | lr ")
    assert list(sweep) == list(NORMS)
    highest = {}
    for norm, cells in sweep.items():
        *results, limit = cells
        assert len(results) == len(rates)
        tried = [c for c in results if c != "-"]
        assert tried and all(c == "-" for c in results[len(tried) :])  # from the lowest rate up
        trains = [c != "diverged" and not c.endswith("(no)") for c in tried]
        for cell, ok in zip(tried, trains, strict=True):
            assert cell == "diverged" or (_percent(cell) < TRAINS_BELOW) == ok
        for i, cell in enumerate(tried[:-1]):  # it went on: finite, and no failure above a pass
            assert cell != "diverged" and (trains[i] or not any(trains[:i]))
        if len(tried) < len(rates):  # it stopped: a divergence, or a failure above a pass
            assert tried[-1] == "diverged" or (not trains[-1] and any(trains[:-1]))
        trained = [lr for lr, ok in zip(rates, trains, strict=False) if ok]
        highest[norm] = max(trained, default=None)
        if not trained:
            assert limit == "none"
        else:
            assert limit == f"{'≥ ' if trained[-1] == rates[-1] else ''}{trained[-1]:g}"
    assert highest["batch"] is not None, report

    curves = _table(report, "| normalisation | epoch 1")
    assert list(curves) == list(NORMS)
    mean = {}
    for norm, cells in curves.items():
        *per_epoch, average = cells
        assert len(per_epoch) == epochs
        if average != "-":
            errors = [_percent(c) for c in per_epoch]
            mean[norm] = _percent(average)
            assert abs(sum(errors) / epochs - mean[norm]) < 1.5e-4
            assert sweep[norm][0] == per_epoch[-1]  # the common rate is the sweep's first

    batch, none = highest["batch"], highest["none"]
    if none is not None:
        relation = (
            "higher than" if batch > none else "the same as" if batch == none else "lower than"
        )
        assert f"with batch norm, {relation} without normalisation ({none:g})" in verdict
    else:
        assert "no rate without normalisation" in verdict
    if "batch" in mean and "none" in mean:
        faster = "faster" if mean["batch"] < mean["none"] else "not faster"
        assert f"batch norm converged {faster} (" in verdict
    assert (out / "normalization.png").is_file()
