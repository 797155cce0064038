"""An experiment's finished parts (cnnlab.experiments.parts): an interrupted run continues
from them, and its report counts the seconds they took."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from cnnlab.cli.main import main
from cnnlab.experiments import registry
from cnnlab.experiments.experiment import Outcome
from cnnlab.experiments.parts import FinishedParts


def test_a_finished_part_is_read_back_and_its_seconds_counted(tmp_path):
    calls = []
    first = FinishedParts(tmp_path, ("budget", 1))
    assert first.get("net at lr 0.1", lambda: calls.append(1) or {"errors": [0.5, 0.25]}) == {
        "errors": [0.5, 0.25]
    }
    assert first.reused_seconds == 0.0
    again = FinishedParts(tmp_path, ("budget", 1))
    assert again.get("net at lr 0.1", lambda: pytest.fail("trained again")) == {
        "errors": [0.5, 0.25]
    }
    saved = json.loads((tmp_path / "parts" / "net-at-lr-0.1.json").read_text())
    assert again.reused_seconds == saved["seconds"] >= 0 and calls == [1]


def test_a_part_of_another_budget_another_key_or_damaged_is_computed_afresh(tmp_path):
    FinishedParts(tmp_path, "small").get("a b", lambda: 1)
    assert FinishedParts(tmp_path, "paper").get("a b", lambda: 2) == 2  # another budget
    assert FinishedParts(tmp_path, "paper").get("a-b", lambda: 3) == 3  # the same file name
    (tmp_path / "parts" / "a-b.json").write_text('{"key": "a-b", "resu')  # a killed write
    parts = FinishedParts(tmp_path, "paper")
    assert parts.get("a-b", lambda: 4) == 4 and parts.reused_seconds == 0.0


def test_an_interrupted_experiment_that_continues_says_so_and_the_rerun_reads_its_parts(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "d"
    trained = []

    def train(key: str, interrupt: bool) -> int:
        if interrupt:
            raise KeyboardInterrupt
        trained.append(key)
        return len(trained)

    def run(interrupt_at: str | None):
        def experiment(out, budget):
            parts = FinishedParts(out, budget)
            found = [parts.get(k, lambda k=k: train(k, k == interrupt_at)) for k in "abc"]
            return Outcome(f"parts {found}", [], [], earlier_seconds=parts.reused_seconds)

        return dataclasses.replace(registry.EXPERIMENTS["depth"], run=experiment)

    monkeypatch.setitem(registry.EXPERIMENTS, "depth", run(interrupt_at="b"))
    assert main(["experiment", "depth", "--out", str(out)]) == 130
    assert capsys.readouterr().err == (
        "cnnlab: interrupted; experiment depth wrote no report: the same command continues "
        f"from the parts it finished, kept in {out}\n"
    )
    monkeypatch.setitem(registry.EXPERIMENTS, "depth", run(interrupt_at=None))
    assert main(["experiment", "depth", "--out", str(out)]) == 0
    assert "depth: parts [1, 2, 3]" in capsys.readouterr().out
    assert trained == ["a", "b", "c"]  # "a" once, before the interruption
    took = re.search(r"in ([\d.]+) s \(([\d.]+) s of it in an earlier run whose finished "
                     r"parts this one read back\)", (out / "report.md").read_text())  # fmt: skip
    assert took and float(took[1]) >= float(took[2]) >= 0
