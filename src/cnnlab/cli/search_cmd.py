"""`cnnlab search MODEL --space FILE --out DIR`: a hyperparameter search on Optuna.

Each trial trains MODEL (its recipe, the flags below, then the trial's values) into
DIR/trial-NNN; the objective is the final top-1 error on a validation split held out of the
training set (--metric test selects on the test set instead). DIR/study.db records every trial:
the same command again continues an interrupted search and runs only what is missing. DIR gets
results.csv, results.md, best.json (for `cnnlab train --config`), objective_vs_params.png and
history.png.

The space file is JSON; keys are training settings or model_args.FIELD:
  {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": true},
   "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
   "model_args.dropout": {"type": "float", "low": 0, "high": 0.5, "grid": [0, 0.25, 0.5]}}
--sampler grid needs a "grid" list (or "choices") for every key.
"""

from __future__ import annotations

import argparse
import sys

import optuna

from cnnlab.cli.tables import render
from cnnlab.data.sources import SOURCES
from cnnlab.search.space import load_space
from cnnlab.search.study import DIRECTIONS, METRICS, SAMPLERS, SearchSettings, run_search

EXAMPLE = """examples:
  cnnlab search lenet5_modern --space space.json --sampler tpe --trials 20 --epochs 3 \\
      --limit-train 10000 --out runs/search-lenet
  cnnlab train --config runs/search-lenet/best.json --epochs 15 --out runs/best
  (run the same search command again to continue it; --trials N raises its total)"""

NOTE_WIDTH = 60  # the printed table's note column; results.md has it whole


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search hyperparameters (grid, random, TPE)",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a registered model name")
    p.add_argument("--space", required=True, metavar="FILE", help="JSON of the settings to vary")
    p.add_argument("--out", required=True, metavar="DIR", help="the search's folder")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default tpe")
    p.add_argument("--trials", type=int, help="trials in all (default: the grid's size, or 20)")
    p.add_argument("--metric", choices=METRICS, default="val", help="objective's split (val)")
    p.add_argument("--direction", choices=DIRECTIONS, default="minimize")
    p.add_argument(
        "--data",
        default="mnist",
        help=f"dataset: {', '.join(SOURCES)}, or a folder or .zip of class folders (default mnist)",
    )
    p.add_argument("--data-dir", help="data folder (default $CNNLAB_DATA, else ~/.cache/cnnlab)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the recipe's)")
    p.add_argument("--limit-train", type=int, help="use the first N training examples")
    p.add_argument("--limit-test", type=int, help="use the first N test examples")
    p.add_argument(
        "--val-split", type=int, help="validation examples (default 10%% of the training set)"
    )
    p.add_argument("--seed", type=int, default=0, help="every trial's seed, and the sampler's")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial prints its own line
    settings = SearchSettings(
        model=args.model,
        space=load_space(args.space, args.model),
        out=args.out,
        sampler=args.sampler,
        trials=args.trials,
        metric=args.metric,
        direction=args.direction,
        data=args.data,
        data_dir=args.data_dir,
        epochs=args.epochs,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        val_split=args.val_split,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    try:
        result = run_search(settings)
    except KeyboardInterrupt:
        print("cnnlab: interrupted; the same command continues the search", file=sys.stderr)
        return 130
    objective = result.objective
    rows = [r | {objective: _percent(r[objective]), "note": _short(r["note"])} for r in result.rows]
    print(render(rows, "table", right=("trial", result.objective, "epochs", "wall_s")))
    if result.best is None:
        print("no trial has completed yet: no best.json")
        return 0
    best = result.best
    print(f"best: trial {best['trial']}, {result.objective} {best[result.objective]:.2%}")
    print(f"its settings: {result.out / 'best.json'} (cnnlab train --config FILE)")
    print(f"results: {result.out / 'results.md'}")
    return 0


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value:.2%}"


def _short(note: str) -> str:
    return note if len(note) <= NOTE_WIDTH else note[: NOTE_WIDTH - 3] + "..."
