"""Benchmark: every family's small-input network after one fixed short budget on MNIST.

Each model trains with its own recipe's optimiser, rate and schedule, shortened
to one pass over the first 10,000 MNIST training digits (padded to 32x32, batch
128), then is tested on all 10,000 test digits. The point is a like-for-like
smoke measurement of how fast each architecture learns and runs on this
machine, not its best accuracy. Records test error, training time and images
per second in benchmarks/results/zoo_short_budget.{json,md}.

    python benchmarks/zoo_short_budget.py
    python benchmarks/zoo_short_budget.py --models resnet20 alexnet_small

Rerunning some models replaces their rows and keeps the others' (each row
records when it was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from mnist_lenet import machine

from cnnlab import list_models
from cnnlab.analysis.paper import measure
from cnnlab.data.preprocessing import MNIST_32
from cnnlab.registry import create_model, get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_MODELS = ["lenet5_modern", *list_models("*_small"), "resnet20", "densenet_bc100_k12"]
BUDGET = dict(epochs=1, limit_train=10_000, batch_size=128, augment=())


def run_one(model: str, seed: int, threads: int) -> dict:
    spec = get_spec(model)
    cfg = TrainConfig.from_recipe(
        model,
        spec.recipe,
        preprocessing=MNIST_32,
        seed=seed,
        threads=threads,
        quiet=True,
        **BUDGET,
    )
    run_dir = Path("runs") / f"bench-zoo-{model}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a benchmark run starts afresh
    command = f"python benchmarks/zoo_short_budget.py --models {model} --seed {seed}"
    result = Trainer(cfg, run_dir, command).fit()
    costs = measure(create_model(model, in_chans=1), (1, 32, 32))
    final = result.final
    return {
        "model": model,
        "family": spec.family,
        "params": costs["params"],
        "macs": costs["macs"],
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "schedule": cfg.schedule,
        "test_top1_error": final["test_top1_error"],
        "train_top1_error": final["train_top1_error"],
        "training_time_s": result.wall_time_s,
        "images_per_s": final["images_per_s"],
        "run_dir": str(run_dir),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "threads": threads,
    }


def write_markdown(rows: list[dict], info: dict, path: Path) -> None:
    lines = [
        "# The zoo after one short budget on MNIST",
        "",
        f"Budget: {BUDGET['epochs']} pass over the first {BUDGET['limit_train']:,} MNIST "
        f"training digits, batch {BUDGET['batch_size']}, padded to 32x32, each model's own "
        "recipe otherwise; error on all 10,000 test digits.",
        f"Machine: {info['cores']} cores, PyTorch {info['torch']}, Python {info['python']}; "
        "PyTorch threads per row. Command: `python benchmarks/zoo_short_budget.py "
        "[--models ...] [--threads N]` (rows measured at different times, see the last column).",
        "",
        "| model | family | params | MACs (1x32x32) | recipe | test error | train time | img/s "
        "| threads | measured |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['family']} | {r['params'] / 1e6:.2f} M | "
            f"{r['macs'] / 1e6:.1f} M | {r['optimizer']} lr {r['lr']} {r['schedule']} | "
            f"{r['test_top1_error']:.2%} | {r['training_time_s']:.0f} s | "
            f"{r['images_per_s']:,.0f} | {r['threads']} | {r['measured']} |"
        )
    path.write_text("\n".join(lines) + "\n")


def record(row: dict) -> None:
    """Put `row` into the results, replacing an earlier row of the same model."""
    results = RESULTS / "zoo_short_budget.json"
    earlier = json.loads(results.read_text()) if results.exists() else {"runs": []}
    previous = [  # rows from before threads were recorded per row ran with the file's count
        {"threads": earlier["machine"]["torch_threads"], **r} for r in earlier["runs"]
    ]
    order = {m: i for i, m in enumerate(DEFAULT_MODELS)}
    kept = [r for r in previous if r["model"] != row["model"]]
    rows = sorted([*kept, row], key=lambda r: order.get(r["model"], len(order)))
    info = machine()
    RESULTS.mkdir(exist_ok=True)
    results.write_text(json.dumps({"machine": info, "budget": BUDGET, "runs": rows}, indent=2))
    write_markdown(rows, info, RESULTS / "zoo_short_budget.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    for model in args.models:
        start = time.perf_counter()
        print(f"training {model} ...", flush=True)
        row = run_one(model, args.seed, args.threads)
        print(json.dumps(row), f"({time.perf_counter() - start:.0f} s)", flush=True)
        record(row)  # after each model, so an interrupted benchmark keeps what it measured
    print(f"results: {RESULTS / 'zoo_short_budget.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
