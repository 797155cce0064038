"""`cnnlab eval RUN_OR_CHECKPOINT`: top-1 and top-5 error of a trained model."""

from __future__ import annotations

import argparse
import json

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli.tables import render
from cnnlab.data.loader import BatchLoader
from cnnlab.data.sources import SOURCES, load_dataset
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.training.evaluate import evaluate

EXAMPLE = "example: cnnlab eval runs/lenet5 --format json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint on a dataset", description=__doc__, epilog=EXAMPLE
    )
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--data", choices=SOURCES, help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir", help="data folder (default $CNNLAB_DATA, else ~/.cache/cnnlab)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--limit", type=int, help="evaluate the first N examples only")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--device", default="auto")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device)
    data = args.data or meta.dataset
    train, test = load_dataset(data, args.data_dir)
    dataset = test if args.split == "test" else train
    if args.limit is not None:
        if args.limit < 1:
            raise CnnlabError(f"--limit {args.limit}: expected >= 1")
        dataset = dataset.subset(slice(0, args.limit))
    if len(dataset.classes) != meta.num_classes:
        raise CnnlabError(
            f"{data} has {len(dataset.classes)} classes but the checkpoint predicts "
            f"{meta.num_classes}"
        )
    model.validate_input(
        (dataset.image_shape[0], *meta.preprocessing.input_size(*dataset.image_shape[1:]))
    )
    loader = BatchLoader(dataset, args.batch_size, meta.preprocessing, device=device)
    meter = evaluate(model, loader, meta.num_classes)
    per_class = (1 - meter.confusion.diagonal() / meter.confusion.sum(1).clamp_min(1)).tolist()
    result = {
        "checkpoint": str(args.checkpoint),
        "model": meta.model,
        "data": data,
        "split": args.split,
        "examples": meter.count,
        "top1_error": meter.top1_error,
        "top5_error": meter.top5_error,
        "per_class_error": dict(zip(meta.classes, per_class)),
    }
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{meta.model} on {data} {args.split} ({meter.count:,} examples): "
            f"top-1 error {meter.top1_error:.2%}, top-5 error {meter.top5_error:.2%}"
        )
        rows = [{"class": c, "error": f"{e:.2%}"} for c, e in result["per_class_error"].items()]
        print(render(rows, "table", right=("error",)))
    return 0
