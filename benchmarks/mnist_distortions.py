"""Benchmark: lenet5_modern on the full MNIST, without and with the LeCun-style distortions.

LeCun et al. 1998 (Section III-C) lowered LeNet-5's test error from 0.95% to 0.8% by
training on randomly distorted copies of the training set (translation, scaling,
squeezing, shearing). This trains lenet5_modern with its own recipe once per
augmentation variant and seed, the same seed for every variant, and records the
final test error of each in benchmarks/results/mnist_distortions.{json,md}.

    python benchmarks/mnist_distortions.py                           # none vs affine:lecun
    python benchmarks/mnist_distortions.py --variants none affine:lecun \\
        "affine:lecun elastic:alpha=34,sigma=4" --seeds 0 1 --epochs 30 --tag 30ep

A variant is a space-separated list of `--augment` specs, `none` for no augmentation.
Reads MNIST from $CNNLAB_DATA (or the cache folder); the run directories go to
runs/bench-distortions-*. Exits 1 if the first augmented variant does not lower the
mean test error of `none`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from mnist_lenet import machine

from cnnlab.data.augment import Affine
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

MODEL = "lenet5_modern"
RESULTS = Path(__file__).resolve().parent / "results"


def run_one(variant: str, seed: int, epochs: int | None, threads: int) -> dict:
    augment = () if variant == "none" else tuple(variant.split())
    cfg = TrainConfig.from_recipe(
        MODEL,
        get_spec(MODEL).recipe,
        seed=seed,
        threads=threads,
        quiet=True,
        epochs=epochs,
        augment=augment,
    )
    slug = variant.replace(" ", "+").replace(":", "-").replace(",", "_").replace("=", "")
    run_dir = Path("runs") / f"bench-distortions-{slug}-e{cfg.epochs}-seed{seed}"
    command = f"python benchmarks/mnist_distortions.py --variants {shlex.quote(variant)}"
    start = time.perf_counter()
    result = Trainer(cfg, run_dir, f"{command} --seeds {seed} --epochs {cfg.epochs}").fit()
    total = time.perf_counter() - start
    final = result.final
    rates = sorted(row["images_per_s"] for row in result.history)
    return {
        "variant": variant,
        "augment": list(cfg.augment),
        "seed": seed,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "schedule": cfg.schedule,
        "test_top1_error": final["test_top1_error"],
        "best_test_top1_error": min(row["test_top1_error"] for row in result.history),
        "train_top1_error_last_epoch": final["train_top1_error"],
        "training_time_s": result.wall_time_s,
        "total_time_s": total,
        "median_images_per_s": rates[len(rates) // 2],
        "run_dir": str(run_dir),
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Mean final test error per variant, and its change against `none` on the same seeds."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    by_seed = {(r["variant"], r["seed"]): r["test_top1_error"] for r in rows}
    out = []
    for v in variants:
        seeds = [r["seed"] for r in rows if r["variant"] == v]
        mean = sum(by_seed[v, s] for s in seeds) / len(seeds)
        paired = [s for s in seeds if ("none", s) in by_seed]
        row = {"variant": v, "seeds": seeds, "mean_test_top1_error": mean}
        if v != "none" and paired:
            changes = [by_seed[v, s] - by_seed["none", s] for s in paired]
            row["mean_change_vs_none"] = sum(changes) / len(changes)
            row["seeds_lower_than_none"] = sum(c < 0 for c in changes)
            row["paired_seeds"] = len(paired)
        out.append(row)
    return out


def write_markdown(rows: list[dict], summary: list[dict], info: dict, path: Path) -> None:
    lecun = ", ".join(f"{k} {v}" for k, v in Affine.PRESETS["lecun"].items())
    r0 = rows[0]
    lines = [
        f"# MNIST: {MODEL} without and with the LeCun-style distortions",
        "",
        f"Machine: {info['cores']} cores, {info['torch_threads']} PyTorch threads, "
        f"PyTorch {info['torch']}, Python {info['python']}, {info['date']}.",
        f"Command: `{shlex.join(['python', 'benchmarks/mnist_distortions.py', *sys.argv[1:]])}`.",
        f"Recipe: {r0['optimizer']} lr {r0['lr']}, {r0['schedule']} schedule, batch "
        f"{r0['batch_size']}; the final epoch's test error on the 10,000 test images (not "
        "the best epoch's). Augmentation acts on training batches only, after preprocessing.",
        f"`affine:lecun`: per example, uniform in +- (translate pixels, scale, squeeze, shear): "
        f"{lecun} (LeCun et al. 1998 name the kinds of distortion but print no ranges).",
        "",
        "| augment | seed | epochs | test error | errors | best epoch's | train error "
        "(last epoch) | train time | img/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['epochs']} | {r['test_top1_error']:.2%} | "
            f"{round(r['test_top1_error'] * 10000)} | {r['best_test_top1_error']:.2%} | "
            f"{r['train_top1_error_last_epoch']:.2%} | {r['training_time_s'] / 60:.1f} min | "
            f"{r['median_images_per_s']:,.0f} |"
        )
    lines += ["", "| augment | seeds | mean test error | change against none (same seeds) |"]
    lines += ["|---|---|---:|---|"]
    for s in summary:
        change = (
            f"{s['mean_change_vs_none'] * 100:+.2f} points; lower on "
            f"{s['seeds_lower_than_none']} of {s['paired_seeds']} seeds"
            if "mean_change_vs_none" in s
            else ""
        )
        seeds = ", ".join(map(str, s["seeds"]))
        lines.append(f"| {s['variant']} | {seeds} | {s['mean_test_top1_error']:.3%} | {change} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["none", "affine:lecun"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, help="default: the recipe's (15)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tag", default="", help="suffix for the results file names")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            print(f"training {MODEL}, augment {variant}, seed {seed} ...", flush=True)
            row = run_one(variant, seed, args.epochs, args.threads)
            print(json.dumps(row, indent=2), flush=True)
            rows.append(row)
    summary = summarise(rows)
    info = machine()
    RESULTS.mkdir(exist_ok=True)
    stem = "mnist_distortions" + (f"-{args.tag}" if args.tag else "")
    data = {"machine": info, "runs": rows, "summary": summary}
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    write_markdown(rows, summary, info, RESULTS / f"{stem}.md")
    print(f"results: {RESULTS / stem}.md")
    augmented = [s for s in summary if "mean_change_vs_none" in s]
    return 0 if augmented and augmented[0]["mean_change_vs_none"] < 0 else 1


if __name__ == "__main__":
    sys.exit(main())
