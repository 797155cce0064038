"""Benchmark: the best CIFAR-10 (or MNIST) test accuracy a wall-clock budget buys here.

Trains one cnnlab model (default resnet20, He et al. 2016's CIFAR network) on the shared
JPEG re-encoded CIFAR-10 (so its numbers are cifar10-jpeg numbers) with a recipe sized to
the budget: the training and inference rates are measured first (`cnnlab.speed`), the
epochs are as many as fit in the budget with each epoch's test evaluation, and a one-cycle
schedule (Smith and Topin 2019) anneals over exactly those epochs, as the public CIFAR-10
speed runs do; SGD with Nesterov momentum, weight decay 5e-4, label smoothing 0.1, random
crops (pad 4) and flips. The clock runs from loading the (cached) data to the last test
evaluation; should a run overshoot, it stops at the first epoch past the budget. Writes
benchmarks/results/cifar10_budget-<M>min.{json,md}, with `-<model>` after the minutes for a
model other than the default resnet20.

`--dataset mnist` runs the same plan on MNIST (padded to 32x32), with LeCun et al. 1998's
affine distortions (`affine:lecun`) in place of crops and flips, for issue 6's "best MNIST
test error in 10 minutes"; it writes benchmarks/results/mnist_budget-<M>min.{json,md}.

    python benchmarks/cifar10_budget.py --minutes 15
    python benchmarks/cifar10_budget.py --minutes 60 --model resnet20 --precision fp32
    python benchmarks/cifar10_budget.py --dataset mnist --minutes 10
    python benchmarks/cifar10_budget.py --minutes 15 --model convnet_speedrun --lr 0.05
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mnist_lenet import machine

from cnnlab.data.preprocessing import MNIST_32
from cnnlab.registry import create_model, get_spec
from cnnlab.speed.throughput import BenchSettings, inference_throughput, training_throughput
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_MODEL = "resnet20"


@dataclass(frozen=True)
class Dataset:
    """What the plan needs to know of a dataset, and how it is augmented."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W) the model sees
    train: int
    test: int
    augment: tuple[str, ...]
    title: str
    source: str


DATASETS = {
    "cifar10": Dataset(
        "cifar10", (3, 32, 32), 50_000, 10_000, ("crop:4", "flip"), "CIFAR-10 (JPEG copy)",
        "cifar10-jpeg (the JPEG re-encoded copy in ../shared/datasets; its accuracies run a "
        "little below the canonical set's)",
    ),
    "mnist": Dataset(
        "mnist", (1, 32, 32), 60_000, 10_000, ("affine:lecun",), "MNIST",
        "mnist (the IDX files in ../shared/datasets), padded to 32x32",
    ),
}  # fmt: skip
SAFETY = 0.85  # of the budget planned for: data loading, the report, rate drift


class OverBudget(Exception):
    pass


def planned_epochs(
    model: str, data: Dataset, minutes: float, batch: int, precision: str, channels_last: bool
) -> tuple[int, dict]:
    """Epochs that fit in the budget at the rates measured now, and those rates."""
    settings = BenchSettings(
        torch.device("cpu"), batch, 1000, steps=10, precision=precision,
        channels_last=channels_last,
    )  # fmt: skip
    net = create_model(model, num_classes=10, in_chans=data.shape[0])
    train_rate = training_throughput(net, data.shape, settings)
    infer_rate = inference_throughput(net, data.shape, settings)
    epoch_s = data.train / train_rate + data.test / infer_rate
    epochs = max(1, math.floor(SAFETY * minutes * 60 / epoch_s))
    return epochs, {"train_images_per_s": train_rate, "infer_images_per_s": infer_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="cifar10")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data", default="../shared/datasets")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="instead of the planned number")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = DATASETS[args.dataset]
    epochs, rates = planned_epochs(
        args.model, data, args.minutes, args.batch_size, args.precision, args.channels_last
    )
    epochs = args.epochs or epochs
    print(f"{args.model}: {epochs} epochs planned for {args.minutes:g} min at {rates}")
    mnist = {"preprocessing": MNIST_32} if data.name == "mnist" else {}
    cfg = TrainConfig.from_recipe(
        args.model, get_spec(args.model).recipe, data=data.name, data_dir=args.data,
        epochs=epochs, batch_size=args.batch_size, optimizer="sgd", lr=args.lr, momentum=0.9,
        nesterov=True, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1,
        augment=data.augment, eval_batch_size=1000, threads=args.threads,
        precision=args.precision, channels_last=args.channels_last, quiet=True, seed=0, **mnist,
    )  # fmt: skip
    run_dir = Path("runs") / f"bench-{data.name}-{args.model}-{args.minutes:g}min"
    tag = f"{args.minutes:g}min" + ("" if args.model == DEFAULT_MODEL else f"-{args.model}")
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    history: list[dict] = []

    def watch(epoch: int, row: dict) -> None:
        history.append({**row, "wall_s": time.perf_counter() - start})
        if time.perf_counter() - start > args.minutes * 60 and epoch < epochs:
            raise OverBudget

    trainer = Trainer(cfg, run_dir, on_epoch_end=watch)
    stopped = False
    try:
        trainer.fit()
    except OverBudget:
        stopped = True
    wall = history[-1]["wall_s"]
    final = history[-1]
    result = {
        "model": args.model,
        "minutes": args.minutes,
        "epochs_planned": epochs,
        "epochs_run": final["epoch"],
        "stopped_over_budget": stopped,
        "wall_s": wall,
        "test_accuracy": 1 - final["test_top1_error"],
        "best_test_accuracy": 1 - min(r["test_top1_error"] for r in history),
        "train_error": final["train_top1_error"],
        "planning_rates": rates,
        "recipe": {k: getattr(cfg, k) for k in (
            "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
            "schedule", "label_smoothing", "augment", "precision", "channels_last")},
        "data": data.source,
        "machine": {**machine(), "threads": args.threads},
        "command": "python benchmarks/cifar10_budget.py"
        f"{'' if data.name == 'cifar10' else ' --dataset ' + data.name} --minutes {args.minutes:g} "
        f"--model {args.model} --precision {args.precision}"
        f"{f' --epochs {args.epochs}' if args.epochs else ''}"
        + "".join(f" --{name.replace('_', '-')} {getattr(args, name):g}"
                  for name in ("lr", "batch_size")
                  if getattr(args, name) != parser.get_default(name))
        + f"{'' if args.channels_last else ' --no-channels-last'}",
        "history": history,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{data.name}_budget-{tag}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# {data.title} in {args.minutes:g} minutes",
        "",
        f"Command: `{result['command']}`; {machine()['date']}, {args.threads} PyTorch threads, "
        f"PyTorch {torch.__version__}. Data: {result['data']}.",
        "",
        f"- Model: `{args.model}`; recipe: SGD lr {args.lr} (Nesterov, momentum 0.9), "
        f"weight decay 5e-4, one-cycle over {epochs} epochs, batch {args.batch_size}, label "
        f"smoothing 0.1, {' '.join(data.augment)}, {args.precision}"
        f"{', channels_last' if args.channels_last else ''}",
        f"- **Test accuracy {result['test_accuracy']:.2%}** (error "
        f"{1 - result['test_accuracy']:.2%}) after {final['epoch']} epochs "
        f"({'stopped at the budget' if stopped else 'as planned'}), {wall / 60:.1f} min from "
        "loading the data to the last evaluation",
        f"- {'Epochs set by --epochs; measured' if args.epochs else 'Planned from measured'} "
        f"rates: {rates['train_images_per_s']:.0f} training and "
        f"{rates['infer_images_per_s']:.0f} inference images/s",
        "",
        "| epoch | train err | test accuracy | wall (min) |",
        "|---:|---:|---:|---:|",
        *[
            f"| {r['epoch']} | {r['train_top1_error']:.2%} | {1 - r['test_top1_error']:.2%} "
            f"| {r['wall_s'] / 60:.1f} |"
            for r in history
        ],
        "",
    ]
    (RESULTS / f"{data.name}_budget-{tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
