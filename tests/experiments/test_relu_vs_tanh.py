"""`cnnlab experiment relu-vs-tanh`: the network, and the small budget on real CIFAR-10."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from cnnlab.experiments.relu_vs_tanh import BUDGETS, FourLayerNet


def test_the_network_has_cuda_convnets_four_layers_and_the_activation_is_its_only_difference():
    torch.manual_seed(0)
    relu = FourLayerNet("relu")
    torch.manual_seed(0)
    tanh = FourLayerNet("tanh")
    assert relu(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    weights = [m for m in relu.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert [m.weight.shape[0] for m in weights] == [32, 32, 64, 10]
    assert sum(p.numel() for p in relu.parameters()) == 89_578  # 2,432 + 25,632 + 51,264 + 10,250
    assert abs(weights[0].weight.std().item() - 1e-4) < 1e-5  # cuda-convnet's initW
    for a, b in zip(relu.state_dict().values(), tanh.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same initial weights
    kinds = [(type(a), type(b)) for a, b in zip(relu.modules(), tanh.modules(), strict=True)]
    assert {pair for pair in kinds if pair[0] is not pair[1]} == {(nn.ReLU, nn.Tanh)}


@pytest.mark.slow
def test_the_report_names_its_target_and_the_verdict_follows_the_iterations(
    cifar10_env, run_experiment, caplog
):
    caplog.set_level("INFO", logger="cnnlab.experiments.relu_vs_tanh")
    verdict, report, out = run_experiment("relu-vs-tanh")
    budget = BUDGETS["small"]
    target = f"{budget.target:.0%}"
    assert f"until the running training error reached **{target}**" in report
    per_epoch = int(re.search(r"\((\d+) iterations per epoch\)", report).group(1))
    rows = re.findall(
        r"\| (relu|tanh) \| ([\d.e-]+) \| (> )?([\d,]+) \| (?:> )?([\d.]+) \| ([\d.]+%|-) \| "
        r"([^|]+) \|",
        report,
    )
    for activation in ("relu", "tanh"):  # every rate of the sweep ran
        assert sorted(float(r[1]) for r in rows if r[0] == activation) == sorted(budget.lrs)
    progress = re.findall(r"relu-vs-tanh: (relu|tanh) at lr ([\d.e-]+): ", caplog.text)
    assert progress == [r[:2] for r in rows]  # each run said how it ended, as it ended
    for _, _, _, iterations, epochs, _, _ in rows:
        assert abs(float(epochs) - int(iterations.replace(",", "")) / per_epoch) < 0.006
    chosen = {r[0]: int(r[3].replace(",", "")) for r in rows if r[6].strip() == "fastest: chosen"}
    assert "relu" in chosen, report  # the small budget's target is within ReLU's reach
    for activation, _, stopped, iterations, _, _, _ in rows:  # no run that reached it was faster
        assert stopped or int(iterations.replace(",", "")) >= chosen[activation]
    relu = chosen["relu"]
    if "tanh" in chosen:
        tanh = chosen["tanh"]
        ratio = f"{tanh / relu:.1f}"
        assert verdict == (
            f"relu-vs-tanh: ReLU reached {target} training error in {relu:,} iterations, tanh "
            f"in {tanh:,}: ReLU was {'faster' if tanh > relu else 'not faster'}, {ratio} times "
            "as fast (the paper: about 6)"
        )
    else:
        ratio = f"more than {budget.max_epochs * per_epoch / relu:.1f}"
        assert f"ReLU was {ratio} times as fast" in verdict
    assert f"Ratio of the iterations, tanh to ReLU: {ratio}." in report
    assert (out / "relu_vs_tanh.png").is_file()
    curves = (out / "curves.csv").read_text().splitlines()
    assert curves[0] == "activation,lr,iteration,running_train_error"
    assert sum(line.startswith("relu,") for line in curves) == sum(
        int(r[3].replace(",", "")) for r in rows if r[0] == "relu"
    )
    last = {}  # each run's running error at its end, from its curve
    for line in curves[1:]:
        activation, lr, _, error = line.split(",")
        last[activation, float(lr)] = float(error)
    for activation, lr, _, iterations, _, error, _ in rows:  # the table says how far each got
        if iterations == "0":
            assert error == "-"  # diverged at its first step
        else:
            assert abs(float(error[:-1]) / 100 - last[activation, float(lr)]) < 6e-5
