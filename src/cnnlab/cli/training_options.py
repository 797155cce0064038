"""The command-line flags that `cnnlab train` and `cnnlab finetune` share: where the data
come from and how to train. Every flag is named after its TrainConfig field, so
`training_settings` reads them back by name."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

from cnnlab.data.sources import DATA_HELP
from cnnlab.errors import CnnlabError
from cnnlab.precision import PRECISIONS
from cnnlab.training.config import TrainConfig
from cnnlab.training.losses import LOSSES
from cnnlab.training.optimizers import OPTIMIZERS
from cnnlab.training.schedules import SCHEDULES
from cnnlab.training.trainer import Trainer

AUGMENT_HELP = (
    "augment training batches, in this order: crop[:PAD] flip[:p=P] "
    "affine:lecun|affine:translate=T,scale=S,squeeze=Q,shear=H,rotate=DEG "
    "elastic[:alpha=A,sigma=S] pca[:std=S] cutout[:SIZE] (see cnnlab.data.augment); "
    "default: the recipe's (the CIFAR ResNets: crop:4 flip); none: no augmentation"
)


def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected epochs separated by commas, e.g. 10,15; got {text!r}"
        ) from None


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The data, optimisation, schedule, loss, augmentation and machine flags."""
    p.add_argument("--data", help=f"{DATA_HELP} (default mnist)")
    p.add_argument("--data-dir", help="data folder (default $CNNLAB_DATA, else ~/.cache/cnnlab)")
    p.add_argument(
        "--dataset-stats",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="normalise by the training split's per-channel mean/std instead of the recipe's",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float, help="SGD momentum, Adam's beta1")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument(
        "--milestones",
        type=_milestones,
        help="multistep: epochs at which the rate drops, e.g. 10,15",
    )
    p.add_argument("--gamma", type=float, help="step/multistep: factor at each drop")
    p.add_argument("--step-size", type=int, help="step: epochs between drops")
    p.add_argument("--loss", choices=tuple(LOSSES))
    p.add_argument(
        "--label-smoothing",
        type=float,
        metavar="EPS",
        help="cross_entropy against (1 - EPS) one-hot + EPS/K (Szegedy et al. 2016, Section 7)",
    )
    p.add_argument("--grad-clip", type=float, help="clip the gradient norm to this")
    p.add_argument(
        "--skip-nonfinite",
        action="store_true",
        default=None,
        help="skip a batch whose loss is NaN or infinite (counted in metrics.csv) instead of "
        "stopping the run with exit code 3",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="also save the training state every N steps, within epochs (default: at the end "
        "of each epoch only); --resume continues from the last one exactly",
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        metavar="M",
        help="also save the training state every M minutes",
    )
    p.add_argument("--seed", type=int, help="one seed for initialisation and data order")
    p.add_argument("--val-split", type=int, help="hold out N training examples for validation")
    p.add_argument("--limit-train", type=int, help="use the first N training examples")
    p.add_argument("--limit-test", type=int, help="use the first N test examples")
    p.add_argument(
        "--classes",
        metavar="NAMES",
        help="train and test on these classes only, e.g. 0,1,2,3,4 (relabelled in the "
        "dataset's order; the checkpoint's classes are these)",
    )
    p.add_argument("--augment", nargs="+", metavar="SPEC", help=AUGMENT_HELP)
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    add_arithmetic_options(p)
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--quiet", action="store_true", default=None, help="one line per epoch")


def add_arithmetic_options(p: argparse.ArgumentParser, given_only: bool = True) -> None:
    """--precision, --channels-last and --compile. With `given_only` an option left out is
    None (the recipe or a --config file decides), else fp32, off and off."""
    p.add_argument(
        "--precision",
        default=None if given_only else "fp32",
        metavar="P",
        help=f"{', '.join(PRECISIONS)}: autocast of forward and loss (fp16 also scales the "
        "loss; default fp32)",
    )
    recipe_default = "the recipe's: on where measured faster, lenet5 and the CIFAR ResNets"
    for flag, what, default in (
        ("--channels-last", "model and batches in channels_last memory format", recipe_default),
        ("--compile", "the forward through torch.compile, compiled in the first steps", "off"),
    ):
        p.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=None if given_only else False,
            help=f"{what} (default: {default if given_only else 'off'})",
        )


def training_settings(args: argparse.Namespace) -> dict[str, object]:
    """The TrainConfig fields the command line set (a flag left out is not a setting)."""
    names = [f.name for f in fields(TrainConfig) if f.name not in ("model", "out")]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def new_run_dir(out: str | None, prefix: str, data: str) -> Path:
    """--out, else runs/PREFIX-DATA-TIME; refused when it already holds a run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out or f"runs/{prefix}-{Path(data).stem}-{stamp}")
    if (run_dir / "config.json").exists():
        raise CnnlabError(
            f"{run_dir} already holds a run: resume it with `cnnlab train --resume {run_dir}` "
            "or choose another --out"
        )
    return run_dir


def fit_and_report(trainer: Trainer) -> int:
    """Train to the end, then print the final test error, the time and the report's path
    (under torchrun, rank 0 alone prints)."""
    result = trainer.fit()
    if not trainer.world.is_main:
        return 0
    final = result.final
    print(
        f"test top-1 error {final['test_top1_error']:.2%} after {final['epoch']} epochs, "
        f"{result.wall_time_s:.1f} s of training"
    )
    print(f"report: {trainer.run_dir / 'report.md'}")
    return 0
