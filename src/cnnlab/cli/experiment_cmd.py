"""`cnnlab experiment NAME --out DIR [--budget small|paper]`: reproduce one of the course's
classic claims on this machine; DIR/report.md states the command, the claim, its source,
the measured outcome and where it differs from the source. `--list` shows them all."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from cnnlab.cli.tables import FORMATS, render
from cnnlab.errors import CnnlabError
from cnnlab.experiments.experiment import BUDGETS, write_report
from cnnlab.experiments.registry import EXPERIMENTS, get_experiment

EXAMPLE = """examples:
  cnnlab experiment --list
  cnnlab experiment bottleneck --out runs/bottleneck
  cnnlab experiment bottleneck --budget paper --out runs/bottleneck-paper"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="reproduce a classic claim (ReLU vs tanh, 1x1 bottlenecks, ...) with a report",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="the experiment (see --list)")
    p.add_argument("--list", action="store_true", help="each experiment, its claim and source")
    p.add_argument("--out", help="folder for report.md and figures (default runs/experiment-NAME)")
    p.add_argument("--budget", choices=BUDGETS, default="small", help="small (default) or paper")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--format", choices=FORMATS, default="table", help="for --list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        rows = [
            {"name": e.name, "claim": e.claim, "source": e.source} for e in EXPERIMENTS.values()
        ]
        print(render(rows, args.format))
        return 0
    if not args.name:
        raise CnnlabError("no experiment given: expected `cnnlab experiment NAME` or --list")
    experiment = get_experiment(args.name)
    if args.threads is not None:
        if args.threads < 1:
            raise CnnlabError(f"--threads {args.threads}: expected a positive number")
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/experiment-{experiment.name}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        outcome = experiment.run(out, args.budget)
    except KeyboardInterrupt:
        again = (
            f"continues from the parts it finished, kept in {out}"
            if experiment.continues
            else "runs it again from the start"
        )
        print(f"cnnlab: interrupted; experiment {experiment.name} wrote no report: the same "
              f"command {again}", file=sys.stderr)  # fmt: skip
        return 130
    seconds = time.perf_counter() - start
    command = "cnnlab " + shlex.join(args.argv)
    report = write_report(out, command, experiment, args.budget, outcome, seconds)
    print(f"{experiment.name}: {outcome.verdict}")
    print(f"report: {report}")
    return 0
