"""`cnnlab finetune CHECKPOINT --data mnist --freeze all-but-head`: transfer learning.

The new run starts from the checkpoint's weights with a new classifier for the data's
classes; the architecture and the preprocessing come from the checkpoint, every other
setting left out from the model's recipe. `--freeze all-but-head` trains the classifier
only (the choice when examples are few), `stages:N` also freezes the first N stages,
`none` fine-tunes everything; `--backbone-lr-mult` gives the backbone a smaller rate.
"""

from __future__ import annotations

import argparse
import shlex

from cnnlab.checkpoint import read_checkpoint, resolve_checkpoint_path
from cnnlab.cli.training_options import (
    add_training_options,
    fit_and_report,
    new_run_dir,
    training_settings,
)
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

EXAMPLE = """examples:
  cnnlab finetune runs/lenet --data mnist --freeze all-but-head --epochs 1
  cnnlab finetune runs/lenet --data digits/ --augment affine:lecun --label-smoothing 0.1
  cnnlab finetune runs/lenet/checkpoints/best.safetensors --freeze stages:2 \\
      --backbone-lr-mult 0.1 --lr 0.001 --out runs/lenet-ft
  cnnlab train --resume runs/lenet-ft --epochs 4     (a fine-tuning run resumes like any)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="train a new classifier on top of a trained checkpoint",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a .safetensors checkpoint or a run directory")
    p.add_argument("--out", help="run directory (default runs/finetune-MODEL-DATA-TIME)")
    p.add_argument(
        "--freeze",
        default="all-but-head",
        metavar="POLICY",
        help="all-but-head (default), stages:N (the first N stages and all before), or none",
    )
    p.add_argument(
        "--backbone-lr-mult",
        type=float,
        help="the backbone's rate is --lr times this (default 1; the head's is --lr)",
    )
    add_training_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = resolve_checkpoint_path(args.checkpoint)
    _, meta = read_checkpoint(source)
    spec = get_spec(meta.model)
    cfg = TrainConfig.from_recipe(
        meta.model,
        spec.recipe,
        **training_settings(args),
        model_args=dict(meta.model_args),
        preprocessing=meta.preprocessing,
        init_from=str(source),
    )
    run_dir = new_run_dir(args.out, f"finetune-{meta.model}", cfg.data)
    cfg.out = str(run_dir)
    trainer = Trainer(cfg, run_dir, "cnnlab " + shlex.join(args.argv))
    if trainer.world.is_main:
        print(
            f"from {source}: {meta.model} trained on "
            f"{meta.data_source or meta.dataset or 'unknown data'} "
            f"({meta.num_classes} classes); new classifier for {len(trainer.classes)} classes"
        )
        print(trainer.freeze)
    return fit_and_report(trainer)
