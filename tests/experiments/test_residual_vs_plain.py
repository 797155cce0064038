"""`cnnlab experiment residual-vs-plain` at its small budget, on real CIFAR-10."""

from __future__ import annotations

import csv
import re

import pytest

from cnnlab.experiments.residual_vs_plain import BUDGETS, NETWORKS


@pytest.mark.slow
def test_the_four_networks_trained_and_the_verdict_follows_their_training_errors(
    cifar10_env, run_experiment
):
    verdict, report, out = run_experiment("residual-vs-plain")
    rows = {
        name: (float(train), float(test))
        for name, train, test in re.findall(
            r"\| (plain-20|plain-56|ResNet-20|ResNet-56) \| ([\d.]+)% \| ([\d.]+)% \|", report
        )
    }
    titles = ("plain-20", "plain-56", "ResNet-20", "ResNet-56")
    assert set(rows) == set(titles)
    for name, network in zip(titles, NETWORKS, strict=True):
        with open(out / network / "metrics.csv", newline="") as f:
            history = list(csv.DictReader(f))
        assert len(history) == BUDGETS["small"].epochs
        last = history[-1]  # the table quotes each network's last epoch
        assert abs(100 * float(last["train_top1_error"]) - rows[name][0]) < 0.006
        assert abs(100 * float(last["test_top1_error"]) - rows[name][1]) < 0.006
        assert rows[name][0] < 90  # each learned something (chance is 90%)
    degraded = rows["plain-56"][0] > rows["plain-20"][0]
    cured = rows["ResNet-56"][0] < rows["ResNet-20"][0]
    assert verdict.startswith(
        f"residual-vs-plain: plain-56's training error ended {'above' if degraded else 'not above'}"
        f" plain-20's ({rows['plain-56'][0]:.2f}% against {rows['plain-20'][0]:.2f}%: the "
        f"degradation problem {'showed' if degraded else 'did not show'}) and ResNet-56's "
        f"{'below' if cured else 'not below'} ResNet-20's"
    )
    assert (out / "residual_vs_plain.png").is_file()
