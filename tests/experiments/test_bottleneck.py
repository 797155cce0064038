"""`cnnlab experiment bottleneck` and the experiment command itself."""

from __future__ import annotations

import dataclasses
import json

from cnnlab.analysis.paper import measure
from cnnlab.cli.main import main
from cnnlab.experiments import registry
from cnnlab.experiments.bottleneck import direct, expected_macs, with_bottleneck


def test_the_lecture_arithmetic_is_what_the_analysis_counts():
    assert expected_macs() == (120_422_400, 12_443_648)  # 120.4 M against 12.4 M
    assert measure(direct(), (192, 28, 28))["macs"] == 120_422_400
    assert measure(with_bottleneck(), (192, 28, 28))["macs"] == 12_443_648


def test_the_small_budget_writes_a_report_with_the_command_on_top(tmp_path, capsys):
    out = tmp_path / "bottleneck"
    assert main(["experiment", "bottleneck", "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "cuts the multiply-adds 9.7-fold" in printed
    report = (out / "report.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "# Experiment `bottleneck`"
    assert lines[2] == f"Command: `cnnlab experiment bottleneck --out {out} --threads 1`"
    assert (
        "| direct 5x5 | 120,422,400 |" in report
        and "| 1x1 to 16, then 5x5 | 12,443,648 |" in report
    )
    assert "Szegedy et al. 2015" in report and "## Against the source" in report
    assert "(the same;" in report  # the count agrees with the lecture's arithmetic
    assert (out / "bottleneck.png").stat().st_size > 1000


def test_list_shows_every_experiment_with_its_claim_and_source(capsys):
    assert main(["experiment", "--list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} >= {"bottleneck", "dropout", "search"}
    assert all(row["claim"] and row["source"] for row in rows)


def test_an_unknown_experiment_is_one_line_naming_the_known_ones(capsys):
    assert main(["experiment", "bottlenek"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'bottleneck'" in err
    assert main(["experiment"]) == 2
    assert "--list" in capsys.readouterr().err


def test_an_interrupted_experiment_says_it_wrote_no_report_and_exits_130(
    tmp_path, capsys, monkeypatch
):
    def interrupted(out, budget):
        raise KeyboardInterrupt

    stopped = dataclasses.replace(registry.EXPERIMENTS["bottleneck"], run=interrupted)
    monkeypatch.setitem(registry.EXPERIMENTS, "bottleneck", stopped)
    assert main(["experiment", "bottleneck", "--out", str(tmp_path / "b")]) == 130
    err = capsys.readouterr().err
    assert err == (
        "cnnlab: interrupted; experiment bottleneck wrote no report: the same command runs it "
        "again from the start\n"
    )
    assert not (tmp_path / "b" / "report.md").exists()
