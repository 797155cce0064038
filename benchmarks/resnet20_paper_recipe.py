"""Benchmark: ResNet-20 on CIFAR-10 with He et al. 2016's own recipe, as far as the time allows.

The recipe is resnet20's registered one (`cnnlab models resnet20`; He et al. 2016, Section
4.2): SGD with momentum 0.9, weight decay 1e-4, batch 128, rate 0.1 divided by 10 at epochs
82 and 123 of 164 (the paper's 32k and 48k of 64k iterations), 4-pixel padding with random
32x32 crops and flips. The paper's figure to meet: 8.75% test error (Table 6). Here it runs
on the shared JPEG re-encoded copy of CIFAR-10 (cifar10-jpeg numbers), in bf16 autocast by
default (`--precision fp32` for the paper's arithmetic; bf16 trains 1.57x as fast here,
benchmarks/results/speed_options.md).

164 epochs take hours on a 2-core CPU, so the run is trained in sittings: each call trains
for `--minutes`, then interrupts the run (it saves its full state every 5 minutes and at
every epoch's end, so an interruption costs at most 5 minutes), and the next call resumes
it where it stopped (`cnnlab train --resume`). Every call rewrites
benchmarks/results/resnet20_paper_recipe.{json,md} from the run's metrics.csv;
`--minutes 0` only rewrites them.

    python benchmarks/resnet20_paper_recipe.py --minutes 120 --threads 1
    python benchmarks/resnet20_paper_recipe.py --minutes 0      # the results only
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from mnist_lenet import machine

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_ERROR = 0.0875  # He et al. 2016, Table 6, ResNet-20 (0.27M parameters)
BUDGET_RESULTS = ("15min", "30min", "60min")  # cifar10_budget.py's, for comparison


def train_command(run: Path, threads: int | None, precision: str) -> list[str]:
    """A fresh run with the recipe, or the resumption of the one in `run` (whose thread
    count may change: a resumed run computes the same up to the order of float sums)."""
    if (run / "config.json").exists():
        command = ["cnnlab", "train", "--resume", str(run)]
    else:
        command = ["cnnlab", "train", "resnet20", "--data", "cifar10", "--out", str(run)]
        command += ["--precision", precision]
    command += ["--checkpoint-minutes", "5", "--quiet"]
    return command + (["--threads", str(threads)] if threads else [])


def train_for(command: list[str], minutes: float) -> int:
    """Run `command` for at most `minutes`, then interrupt it as Ctrl-C would."""
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", *command[1:]])
    try:
        return process.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        return process.wait()


def read_run(run: Path) -> tuple[dict, list[dict]]:
    config = json.loads((run / "config.json").read_text())
    with open(run / "metrics.csv", newline="") as f:
        rows = [{k: float(v) if v else None for k, v in r.items()} for r in csv.DictReader(f)]
    return config, rows


def budget_runs() -> list[tuple[str, float, int]]:
    """(budget, test accuracy, epochs) of the recorded cifar10_budget.py runs."""
    found = []
    for tag in BUDGET_RESULTS:
        path = RESULTS / f"cifar10_budget-{tag}.json"
        if path.exists():
            r = json.loads(path.read_text())
            found.append((tag, r["test_accuracy"], r["epochs_run"]))
    return found


def summarise(config: dict, rows: list[dict]) -> dict:
    done = len(rows)
    best = min(rows, key=lambda r: r["test_top1_error"]) if rows else None
    return {
        "epochs_planned": config["epochs"],
        "epochs_done": done,
        "milestones": config["milestones"] or [round(config["epochs"] * f) for f in (0.5, 0.75)],
        "final_test_error": rows[-1]["test_top1_error"] if rows else None,
        "best_test_error": best["test_top1_error"] if best else None,
        "best_epoch": int(best["epoch"]) if best else None,
        "training_hours": sum(r["epoch_time_s"] for r in rows) / 3600,
        "paper_test_error": PAPER_ERROR,
        "precision": config["precision"],
        "threads": config["threads"],
        "augment": config["augment"],
    }


def write_results(summary: dict, rows: list[dict], info: dict, command: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": info, "command": command, **summary, "epochs": rows}
    (RESULTS / "resnet20_paper_recipe.json").write_text(json.dumps(out, indent=2) + "\n")
    s = summary
    finished = s["epochs_done"] >= s["epochs_planned"]
    status = (
        "the full schedule"
        if finished
        else f"{s['epochs_done']} of its {s['epochs_planned']} epochs so far (the run resumes "
        "where it stopped; the rate drops at epochs "
        f"{', '.join(map(str, s['milestones']))})"
    )
    lines = [
        "# ResNet-20 on CIFAR-10 with the paper's recipe",
        "",
        f"Machine: {info['cores']} cores, PyTorch {info['torch']}, {info['date']}; "
        f"{s['threads'] or 'the default number of'} PyTorch threads in the last sitting "
        f"(the img/s column shows each epoch's rate). Command of the last sitting: `{command}`.",
        "",
        f"Recipe: resnet20's registered one (He et al. 2016, Section 4.2), "
        f"{s['precision']}, augmentation {' '.join(s['augment']) or 'none'}; the shared JPEG "
        "copy of CIFAR-10, so these are cifar10-jpeg numbers. Trained: "
        f"{status}, {s['training_hours']:.2f} h of training.",
        "",
    ]
    if s["epochs_done"]:
        verdict = "final" if finished else "latest"
        lines += [
            f"**Test error: {s['final_test_error']:.2%} ({verdict} epoch), best "
            f"{s['best_test_error']:.2%} at epoch {s['best_epoch']}; the paper: "
            f"{PAPER_ERROR:.2%} after the full schedule (Table 6).**",
            "",
        ]
    if s["epochs_done"] < s["milestones"][0]:
        lines += [
            f"The rate has not dropped yet (first drop at epoch {s['milestones'][0]}); in the "
            "paper's Figure 6 the error falls most at the drops, so the latest error is not "
            "yet comparable with the paper's final one.",
            "",
        ]
    lines += ["| epoch | rate | training error | test error | img/s | epoch time |"]
    lines += ["|---:|---:|---:|---:|---:|---:|"]
    shown = {1, len(rows)} | {e for e in range(10, len(rows) + 1, 10)}
    shown |= {m + d for m in s["milestones"] for d in (0, 1) if m + d <= len(rows)}
    for r in rows:
        if int(r["epoch"]) in shown:
            lines.append(
                f"| {int(r['epoch'])} | {r['lr']:.3g} | {r['train_top1_error']:.2%} | "
                f"{r['test_top1_error']:.2%} | {r['images_per_s']:,.0f} | "
                f"{r['epoch_time_s']:.0f} s |"
            )
    budgets = budget_runs()
    if budgets:
        lines += [
            "",
            "Against the wall-clock budgets of `cifar10_budget.py` (resnet20, one-cycle "
            "schedule sized to the budget, 2 threads):",
            "",
            "| budget | test accuracy | epochs |",
            "|---|---:|---:|",
        ]
        lines += [f"| {tag} | {acc:.2%} | {epochs} |" for tag, acc, epochs in budgets]
    lines += [
        "",
        "The training error is measured on the augmented batches in training mode, as the "
        "paper's curves are; a sitting's interruption repeats at most 5 minutes of training, "
        "so the epoch times of a resumed epoch include that.",
    ]
    (RESULTS / "resnet20_paper_recipe.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120, help="this sitting's training")
    parser.add_argument("--run", type=Path, default=Path("runs/resnet20-paper"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    args = parser.parse_args()
    command = train_command(args.run, args.threads, args.precision)
    if args.minutes > 0:
        rc = train_for(command, args.minutes)
        if rc not in (0, 130):
            return rc
    if not (args.run / "metrics.csv").exists():
        print(f"{args.run}: no metrics.csv yet; train a sitting first", file=sys.stderr)
        return 2
    config, rows = read_run(args.run)
    write_results(summarise(config, rows), rows, machine(), shlex.join(["python", *sys.argv]))
    print(f"wrote {RESULTS / 'resnet20_paper_recipe.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
