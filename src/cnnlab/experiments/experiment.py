"""What an experiment is, and the report every experiment writes.

An experiment runs at a budget ("small": minutes on a laptop CPU, what the tests run;
"paper": the original setup as far as sensible) and returns an `Outcome`: a verdict line,
the measured findings, how they compare with the source's claim, and the figures it drew.
`write_report` turns that into DIR/report.md with the command that produced it on top.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.atomic_file import write_text_atomically

BUDGETS = ("small", "paper")


@dataclass
class Outcome:
    """What one run of an experiment found."""

    verdict: str  # one line: the claim held, or not, with the deciding figure
    findings: list[str]  # Markdown lines: tables, measured figures
    against_the_source: list[str]  # where the measurement agrees or differs, and why
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, file in DIR)
    earlier_seconds: float = 0.0  # what the parts an interrupted earlier run finished took


@dataclass(frozen=True)
class Experiment:
    """A claim from the course, its source, and how to test it."""

    name: str
    claim: str
    source: str
    run: Callable[[Path, str], Outcome]  # (output folder, budget) -> outcome
    budgets: dict[str, str] = field(default_factory=dict)  # budget -> what it means here
    continues: bool = False  # an interrupted run's finished parts are kept (see .parts)


def write_report(out: Path, command: str, experiment: Experiment, budget: str, outcome: Outcome,
                 seconds: float) -> Path:  # fmt: skip
    """DIR/report.md: the command, the claim and its source, the verdict, the findings.
    `seconds` is this run's; the parts an earlier, interrupted run finished add theirs."""
    earlier = outcome.earlier_seconds
    took = f"{seconds + earlier:.1f} s" + (
        f" ({earlier:.1f} s of it in an earlier run whose finished parts this one read back)"
        if earlier
        else ""
    )
    lines = [
        f"# Experiment `{experiment.name}`",
        "",
        f"Command: `{command}`",
        "",
        f"- Claim: {experiment.claim}",
        f"- Source: {experiment.source}",
        f"- Budget: {budget} ({experiment.budgets.get(budget, '')})",
        f"- Ran {time.strftime('%Y-%m-%d %H:%M')} in {took} on {platform.machine()} "
        f"{platform.system()}, PyTorch threads: {torch.get_num_threads()}, PyTorch "
        f"{torch.__version__}",
        "",
        "## Outcome",
        "",
        f"**{outcome.verdict}**",
        "",
        *outcome.findings,
        "",
        "## Against the source",
        "",
        *outcome.against_the_source,
        "",
        *[f"![{caption}]({name})\n" for caption, name in outcome.figures],
    ]
    path = out / "report.md"
    write_text_atomically(path, "\n".join(lines) + "\n")
    return path
