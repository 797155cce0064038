"""`cnnlab experiment nas` at its small budget on real MNIST, and its parts."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import re
import shlex

import optuna
import pytest
import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli.main import main
from cnnlab.cli.model_args import parse_model_args
from cnnlab.experiments.nas import BUDGETS, Trained, pareto_front, propose, train_command
from cnnlab.registry import create_model

LENET5_MACS = 416_520  # lenet5 and lenet5_modern on a 32x32 grey image


def model_args_of(command: str) -> dict:
    """The --model-arg values of a command line, as `cnnlab train` reads them."""
    words = shlex.split(command)
    return parse_model_args([words[i + 1] for i, w in enumerate(words) if w == "--model-arg"])


@pytest.fixture(scope="module")
def small_run(mnist_data_dir, tmp_path_factory):
    """The small budget, run once for the tests below: (exit code, output folder, stdout)."""
    out = tmp_path_factory.mktemp("nas")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setenv("CNNLAB_DATA", str(mnist_data_dir))
        code = main(["experiment", "nas", "--out", str(out)])
    return code, out, printed.getvalue()


def test_the_front_and_the_baselines_are_reported(small_run):
    code, out, _ = small_run
    assert code == 0
    report = (out / "report.md").read_text()
    front = [
        (int(macs.replace(",", "")), float(error))
        for macs, error in re.findall(
            r"^\| trial \d+ \| [^|]+ \| ([\d,]+) \| [\d,]+ \| ([\d.]+)% \|$", report, re.M
        )
    ]
    baselines = dict(
        (name, int(macs.replace(",", "")))
        for name, macs in re.findall(
            r"^\| (lenet5|lenet5_modern) \| [^|]+ \| ([\d,]+) \| [\d,]+ \| [\d.]+% \|$",
            report,
            re.M,
        )
    )
    assert baselines == {"lenet5": LENET5_MACS, "lenet5_modern": LENET5_MACS}
    # a Pareto front: each costlier network on it has a lower validation error
    assert front and all(a[0] < b[0] and a[1] > b[1] for a, b in itertools.pairwise(front))
    with open(out / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == BUDGETS["small"].trials
    assert sorted((int(t["macs"]), round(100 * float(t["val_error"]), 2)) for t in trials
                  if t["on_front"] == "True") == front  # fmt: skip
    assert min(float(t["val_error"]) for t in trials) < 0.2  # the search found nets that learn
    assert all(int(t["macs"]) <= BUDGETS["small"].max_macs for t in trials)
    assert (out / "nas.png").is_file()


def test_the_verdict_follows_the_confirmation_runs(small_run):
    _, out, printed = small_run
    verdict = next(line for line in printed.splitlines() if line.startswith("nas: "))
    report = (out / "report.md").read_text()
    with open(out / "trials.csv", newline="") as f:
        cheapest = min(int(t["macs"]) for t in csv.DictReader(f))
    if verdict.startswith("nas: no searched network came in at or under"):
        assert cheapest > LENET5_MACS and "| mean |" not in report
        return
    match = re.fullmatch(
        r"nas: a searched network (beat|did not beat) lenet5_modern at no more multiply-adds "
        r"\(([\d.]+) M against 0\.417 M\): test error ([\d.]+)% against ([\d.]+)%, mean of 2 "
        r"fresh seeds",
        verdict,
    )
    assert match, verdict
    assert float(match[2]) <= 0.417
    searched, hand = (
        float(v)
        for v in re.search(r"^\| mean \| ([\d.]+)% \| ([\d.]+)% \|$", report, re.M).groups()
    )
    if searched != hand:
        assert (match[1] == "beat") == (searched < hand)
    assert max(searched, hand) < 20  # both learned


def test_the_printed_command_trains_the_chosen_architecture(small_run, mnist_env, tmp_path):
    _, out, _ = small_run
    report = (out / "report.md").read_text()
    block = re.search(r"^```\n(cnnlab train convnet .*)\n```$", report, re.M)
    if block is None:  # no searched network was cheap enough to be chosen
        assert "| mean |" not in report
        return
    run = tmp_path / "best"
    quick = ["--epochs", "1", "--limit-train", "256", "--limit-test", "100", "--quiet"]
    assert main([*shlex.split(block[1])[1:], *quick, "--out", str(run)]) == 0
    model, meta = load_checkpoint(run)
    args = model_args_of(block[1])
    assert meta.model == "convnet" and list(model.cfg.widths) == args["widths"]
    assert list(model.cfg.kernels) == args["kernels"] and model.cfg.norm == args["norm"]
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_proposal_of_the_space_builds_and_survives_the_command_line(budget):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        args = propose(study.ask(), BUDGETS[budget])
        with torch.device("meta"):
            model = create_model("convnet", **args)
        assert len(model.stages) == len(args["widths"]) == len(args["kernels"])
        assert model_args_of(train_command(args, "mnist")) == args


def test_the_pareto_front_keeps_the_undominated_networks_once():
    def net(macs: int, error: float) -> Trained:
        return Trained(f"{macs}", "convnet", {}, macs, 0, error, 0.0)

    points = [net(300, 0.05), net(100, 0.10), net(200, 0.10), net(400, 0.05), net(500, 0.02)]
    again = net(300, 0.05)  # the same point a second time
    front = pareto_front([*points, again])
    assert [(p.macs, p.val_error) for p in front] == [(100, 0.10), (300, 0.05), (500, 0.02)]
    assert front[1] is points[0]
