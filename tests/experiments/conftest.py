"""`run_experiment(name)`: `cnnlab experiment NAME --out DIR` at the small budget, through the
real command line: (the verdict line it printed, DIR/report.md's text, DIR)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cnnlab.cli.main import main


@pytest.fixture
def run_experiment(tmp_path, capsys) -> Callable[[str], tuple[str, str, Path]]:
    def run(name: str) -> tuple[str, str, Path]:
        out = tmp_path / name
        assert main(["experiment", name, "--out", str(out)]) == 0
        printed = capsys.readouterr().out.splitlines()
        verdict = next(line for line in printed if line.startswith(f"{name}: "))
        return verdict, (out / "report.md").read_text(), out

    return run
