"""`cnnlab train MODEL --data mnist`: train into a run directory, or resume one.

Every setting left out comes from the model's recipe (`cnnlab models` lists the
models; each family's docs give its recipe). `torchrun --nproc-per-node N -m cnnlab
train ...` trains in N processes (DistributedDataParallel; --batch-size stays the
global batch); only the first process prints and writes the run directory.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from cnnlab.cli.model_args import parse_model_args
from cnnlab.cli.training_options import (
    add_training_options,
    fit_and_report,
    new_run_dir,
    training_settings,
)
from cnnlab.errors import CnnlabError
from cnnlab.layers import ACTIVATIONS, INIT_SCHEMES
from cnnlab.models.technique_options import TECHNIQUE_OPTIONS, technique_overrides
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import World, current_world
from cnnlab.training.trainer import Trainer

EXAMPLE = """examples:
  cnnlab train lenet5_1998 --data mnist
  cnnlab train lenet5_modern --epochs 3 --limit-train 5000 --out runs/quick
  cnnlab train lenet5_modern --model-arg norm=none --model-arg dropout=0.3
  cnnlab train lenet5_modern --norm none --act tanh --dropout 0.2 --label-smoothing 0.1
  cnnlab train lenet5_modern --augment affine:lecun elastic:alpha=34,sigma=4
  cnnlab train lenet5_modern --classes 0,1,2,3,4   (digits 0-4 only, labelled 0-4)
  cnnlab train --resume runs/quick --epochs 6
  cnnlab train resnet20 --data cifar10 --checkpoint-minutes 10
                                (a kill or a power cut costs at most 10 minutes: --resume
                                 continues from the last state exactly, within an epoch too)
  torchrun --nproc-per-node 2 -m cnnlab train lenet5 --out runs/ddp
                                                   (2 processes; resumable with any number)
  cnnlab train --config best.json --epochs 20     (settings from a file, e.g. a run's
                                                    config.json or `cnnlab search`'s best)"""

# settings that may change when a run is resumed: they do not alter what it computes (but
# --skip-nonfinite: it lets a run that stopped at a NaN loss go on past it)
RESUMABLE = {
    "epochs", "quiet", "device", "threads", "channels_last", "compile",
    "checkpoint_every", "checkpoint_minutes", "skip_nonfinite",
}  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", help="a registered model name")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATA-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run where it stopped")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="JSON of training settings (any fields of a run's config.json); flags override it",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a field of the model's config (repeatable)",
    )
    t = p.add_argument_group(
        "techniques",
        "set the model's own place for each (its config field, whatever the family calls it); "
        "they win over --model-arg, and a value the model does not support is an error "
        "that says what it supports",
    )
    t.add_argument("--norm", choices=("batch", "layer", "instance", "group", "lrn", "none"))
    t.add_argument("--act", choices=tuple(ACTIVATIONS), metavar="NAME", help=", ".join(ACTIVATIONS))
    t.add_argument(
        "--init",
        choices=("paper", *INIT_SCHEMES),
        metavar="SCHEME",
        help=f"paper (the family's own) or {', '.join(INIT_SCHEMES)}",
    )
    t.add_argument("--dropout", type=float, metavar="P", help="the model's dropout probability")
    add_training_options(p)
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> dict[str, object]:
    settings = training_settings(args)
    if args.model_arg:
        settings["model_args"] = parse_model_args(args.model_arg)
    return settings


def _resume(args: argparse.Namespace, settings: dict[str, object]) -> tuple[TrainConfig, Path]:
    run_dir = Path(args.resume)
    config = run_dir / "config.json"
    if not config.is_file():
        raise CnnlabError(f"--resume {run_dir}: no config.json there, so not a cnnlab run")
    fixed = sorted(set(settings) - RESUMABLE) + (["model"] if args.model else [])
    fixed += [o for o in TECHNIQUE_OPTIONS if getattr(args, o) is not None]
    if fixed:
        raise CnnlabError(
            "--resume continues the run as configured; only --epochs, --quiet, --device, "
            "--threads, --channels-last, --compile, --checkpoint-every, --checkpoint-minutes "
            "and --skip-nonfinite may change, got "
            + ", ".join("--" + f.replace("_", "-") for f in fixed)
        )
    cfg = TrainConfig.read(config)
    for key, value in settings.items():
        setattr(cfg, key, value)
    cfg.validate()
    return cfg, run_dir


def config_file_settings(path: str) -> dict[str, Any]:
    """The TrainConfig fields a JSON file sets (a run's `out` is not carried over)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CnnlabError(f"--config {path}: not a readable JSON file ({e})") from None
    settings = TrainConfig.settings_from_dict(d, f"--config {path}")
    settings.pop("out", None)
    return settings


def _command(argv: list[str], world: World) -> str:
    """The command line as the run's report quotes it, with torchrun's process count."""
    command = shlex.join(argv)
    if not world.distributed:
        return f"cnnlab {command}"
    nodes = f"--nnodes {world.size // world.local_size} " if world.local_size < world.size else ""
    return f"torchrun {nodes}--nproc-per-node {world.local_size} -m cnnlab {command}"


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    world = current_world()
    if args.resume:
        if args.config:
            raise CnnlabError("--resume continues a run as configured: --config cannot change it")
        cfg, run_dir = _resume(args, settings)
    else:
        from_file = config_file_settings(args.config) if args.config else {}
        model = args.model or from_file.pop("model", None)
        from_file.pop("model", None)
        if not model:
            raise CnnlabError(
                "no model given: expected `cnnlab train MODEL`, a --config naming one, "
                "or --resume RUN_DIR"
            )
        spec = get_spec(model)
        options = {o: getattr(args, o) for o in TECHNIQUE_OPTIONS}
        techniques = technique_overrides(model, spec.family, **options)
        if techniques:  # the technique flags win over --model-arg and the --config file
            model_args = settings.get("model_args", from_file.get("model_args", {}))
            settings["model_args"] = {**model_args, **techniques}
        cfg = TrainConfig.from_recipe(model, spec.recipe, **{**from_file, **settings})
        run_dir = new_run_dir(args.out, model, cfg.data)
        cfg.out = str(run_dir)
    trainer = Trainer(cfg, run_dir, _command(args.argv, world))
    resumed = trainer.restore() if args.resume else False
    if world.is_main:  # the first process speaks for all
        if resumed:
            print(f"resuming {run_dir} {trainer.resume_point}")
        elif args.resume:
            print(f"{run_dir} stopped before its first checkpoint: starting it from the beginning")
    return fit_and_report(trainer)
