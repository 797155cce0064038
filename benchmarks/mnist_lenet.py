"""Benchmark: the LeNet-5 models trained on the full MNIST with their own recipes.

Compares each run's final test error with its target (the paper's 0.95% for
lenet5_1998, LeCun et al. 1998, Section III-C; 0.8% for lenet5_modern) and
records error, wall time and throughput in benchmarks/results/mnist_lenet.{json,md}.

    python benchmarks/mnist_lenet.py                     # both models
    python benchmarks/mnist_lenet.py --models lenet5_1998

Reads MNIST from $CNNLAB_DATA (or the cache folder); the run directories go
to runs/bench-MODEL. Exits 1 if a model misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

TARGETS = {  # model -> (target test error, where it comes from)
    "lenet5_1998": (0.0095, "LeCun et al. 1998, Section III-C: 0.95% without distortions"),
    "lenet5_modern": (0.008, "cnnlab (foundation issue) for the modern variant"),
    "lenet5": (0.012, "cnnlab for the lecture-table variant"),
}
RESULTS = Path(__file__).resolve().parent / "results"


def run_one(model: str, seed: int, threads: int) -> dict:
    spec = get_spec(model)
    cfg = TrainConfig.from_recipe(model, spec.recipe, seed=seed, threads=threads, quiet=True)
    run_dir = Path("runs") / f"bench-{model}-seed{seed}"
    command = f"python benchmarks/mnist_lenet.py --models {model} --seed {seed}"
    start = time.perf_counter()
    result = Trainer(cfg, run_dir, command).fit()
    total = time.perf_counter() - start
    target, source = TARGETS[model]
    final = result.final
    rates = [row["images_per_s"] for row in result.history]
    return {
        "model": model,
        "seed": seed,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "schedule": cfg.schedule,
        "test_top1_error": final["test_top1_error"],
        "train_top1_error_last_epoch": final["train_top1_error"],
        "best_test_top1_error": min(row["test_top1_error"] for row in result.history),
        "target": target,
        "target_source": source,
        "met": final["test_top1_error"] <= target,
        "training_time_s": result.wall_time_s,
        "total_time_s": total,
        "median_images_per_s": sorted(rates)[len(rates) // 2],
        "run_dir": str(run_dir),
    }


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def write_markdown(rows: list[dict], info: dict, path: Path) -> None:
    lines = [
        "# MNIST: LeNet-5 models with their default recipes",
        "",
        f"Machine: {info['cores']} cores, {info['torch_threads']} PyTorch threads, "
        f"PyTorch {info['torch']}, Python {info['python']}, {info['date']}.",
        f"Command: `{shlex.join(['python', 'benchmarks/mnist_lenet.py', *sys.argv[1:]])}` "
        "(the final epoch's test error, not the best epoch's).",
        "",
        "| model | epochs | batch | optimiser | test error | target | met | train time | img/s |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epochs']} | {r['batch_size']} | {r['optimizer']} "
            f"lr {r['lr']} {r['schedule']} | {r['test_top1_error']:.2%} | {r['target']:.2%} | "
            f"{'yes' if r['met'] else 'NO'} | {r['training_time_s'] / 60:.1f} min | "
            f"{r['median_images_per_s']:,.0f} |"
        )
    lines += ["", *[f"- {r['model']}: target set by {r['target_source']}" for r in rows], ""]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5_1998", "lenet5_modern"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tag", default="", help="suffix for the results file names")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        print(f"training {model} ...", flush=True)
        row = run_one(model, args.seed, args.threads)
        print(json.dumps(row, indent=2), flush=True)
        rows.append(row)
    info = machine()
    RESULTS.mkdir(exist_ok=True)
    stem = "mnist_lenet" + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"machine": info, "runs": rows}, indent=2))
    write_markdown(rows, info, RESULTS / f"{stem}.md")
    print(f"results: {RESULTS / stem}.md")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
