"""`cnnlab eval RUN_OR_CHECKPOINT`: top-1, top-5 and per-class error of a trained model,
and its confusion matrix (json); `--ten-crop` tests as AlexNet did (Krizhevsky et al.
2012, Section 4.1): the softmax averaged over the four corner and the centre crops and
their horizontal reflections.

The crops are taken from the preprocessed images, of --crop-size (default: the size the
model was trained on) after padding by --crop-pad pixels of black (pixel value 0) on every
side (default 4 when the images are no larger than the crop, so that the corners are
4-pixel shifts, else 0). A model with a fixed input size needs crops of that size.
Ten-crop testing suits models trained with crop and flip augmentation on images whose
classes are mirror-symmetric; digits are not (a reflected 2 is no 2), so on digits it
raises the error, and eval says so.
"""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.checkpoint import CheckpointMeta, load_checkpoint
from cnnlab.cli.tables import render
from cnnlab.data.class_subset import keep_classes
from cnnlab.data.loader import BatchLoader
from cnnlab.data.sources import SOURCES, describe_source, load_dataset
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.training.evaluate import TenCrop, evaluate

EXAMPLE = """examples:
  cnnlab eval runs/lenet5 --format json
  cnnlab eval runs/lenet5 --ten-crop                   (32x32 crops of the 32x32 inputs padded by 4)
  cnnlab eval runs/resnet --ten-crop --crop-size 28    (28x28 crops of 32x32 inputs, no padding)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument(
        "--data",
        help=f"dataset: {', '.join(SOURCES)}, or a folder or .zip of class folders "
        "(default: the one it was trained on)",
    )
    p.add_argument("--data-dir", help="data folder (default $CNNLAB_DATA, else ~/.cache/cnnlab)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--limit", type=int, help="evaluate the first N examples only")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--device", default="auto")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--ten-crop", action="store_true", help="average the softmax over ten crops")
    p.add_argument("--crop-size", type=int, metavar="S", help="ten-crop: SxS crops")
    p.add_argument("--crop-pad", type=int, metavar="P", help="ten-crop: pad by P pixels first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device)
    data = args.data or meta.dataset
    if not data:
        raise CnnlabError(
            f"{args.checkpoint} does not say what data it was trained on "
            f"({meta.data_source or 'no record'}): pass --data"
        )
    train, test = load_dataset(data, args.data_dir)
    dataset = test if args.split == "test" else train
    if set(meta.classes) < set(dataset.classes):  # trained with --classes
        print(
            f"note: evaluating on the checkpoint's {meta.num_classes} classes of the "
            f"{len(dataset.classes)} in {data} ({', '.join(meta.classes)})",
            file=sys.stderr,
        )
        dataset = keep_classes(dataset, meta.classes)
        if dataset.classes != tuple(meta.classes):
            raise CnnlabError(
                f"{data} orders the classes {', '.join(dataset.classes)}; the checkpoint "
                f"was trained on {', '.join(meta.classes)}"
            )
    if args.limit is not None:
        if args.limit < 1:
            raise CnnlabError(f"--limit {args.limit}: expected >= 1")
        dataset = dataset.subset(slice(0, args.limit))
    if len(dataset.classes) != meta.num_classes:
        raise CnnlabError(
            f"{data} has {len(dataset.classes)} classes but the checkpoint predicts "
            f"{meta.num_classes}"
        )
    if meta.data_source and dataset.source != meta.data_source:
        print(
            f"note: the checkpoint was trained on {meta.data_source}, this is {dataset.source}",
            file=sys.stderr,
        )
    crop = _ten_crop(args, meta, dataset.image_shape)
    size = meta.preprocessing.input_size(*dataset.image_shape[1:]) if crop is None else crop.size
    model.validate_input((dataset.image_shape[0], *size))
    loader = BatchLoader(dataset, args.batch_size, meta.preprocessing, device=device)
    if crop is not None and meta.digits:
        print(
            "note: ten-crop reflects the images; digits are not mirror-symmetric", file=sys.stderr
        )
    meter = evaluate(model, loader, meta.num_classes, ten_crop=crop)
    per_class = meter.per_class_error
    result = {
        "checkpoint": str(args.checkpoint),
        "model": meta.model,
        "data": data,
        "data_source": dataset.source,
        "split": args.split,
        "examples": meter.count,
        "top1_error": meter.top1_error,
        "top5_error": meter.top5_error,
        "ten_crop": None if crop is None else {"size": list(crop.size), "pad": crop.pad},
        "per_class_error": dict(zip(meta.classes, per_class)),
        "confusion": meter.confusion.tolist(),  # rows: true class, columns: predicted
    }
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        tested = "" if crop is None else f", ten {crop.size[0]}x{crop.size[1]} crops"
        print(
            f"{meta.model} on {describe_source(dataset.source)} {args.split} "
            f"({meter.count:,} examples{tested}): "
            f"top-1 error {meter.top1_error:.2%}, top-5 error {meter.top5_error:.2%}"
        )
        counts = meter.confusion.sum(dim=1).tolist()
        rows = [
            {"class": c, "examples": n, "error": "-" if e is None else f"{e:.2%}"}
            for c, n, e in zip(meta.classes, counts, per_class)
        ]
        print(render(rows, "table", right=("examples", "error")))
    return 0


def _ten_crop(
    args: argparse.Namespace, meta: CheckpointMeta, image_shape: tuple[int, int, int]
) -> TenCrop | None:
    """The ten-crop geometry the flags ask for (see the module docstring), or None."""
    if not args.ten_crop:
        if args.crop_size is not None or args.crop_pad is not None:
            raise CnnlabError("--crop-size and --crop-pad: expected together with --ten-crop")
        return None
    height, width = meta.preprocessing.input_size(*image_shape[1:])
    if args.crop_size is None:
        size = meta.preprocessing.input_size(*meta.image_shape[1:])
    else:
        size = (args.crop_size, args.crop_size)
    pad = args.crop_pad
    if pad is None:
        pad = 0 if height > size[0] and width > size[1] else 4
    return TenCrop(size, pad)  # a crop larger than the padded input fails on the first batch
