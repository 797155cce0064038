"""`cnnlab export CHECKPOINT --format onnx|torchscript --out FILE`: a trained model as a file
other runtimes load (onnxruntime and other ONNX runtimes; libtorch for TorchScript), with a
dynamic batch axis.

The file records the model name and arguments, the input shape (C, H, W), the preprocessing
a raw image must go through, the class names and the cnnlab version: as JSON under the key
"cnnlab" of an ONNX file's metadata_props, and as the extra file cnnlab.json of a TorchScript
archive.

Unless --no-check, the written file is run (onnxruntime's CPU provider, or torch.jit.load) on
the first batch of the test set of the checkpoint's dataset (or --data), preprocessed as in
training, and its logits must equal PyTorch's within --tolerance: the largest absolute
difference of a logit may be 1e-5, times the largest |logit| when that exceeds 1; beyond
that, the file's logits must be no more than 4 times as far from the model's float64 logits
as PyTorch's float32 ones are (float32 rounding; see cnnlab.export.check). A failed check
exits with status 1 and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from cnnlab.checkpoint import CheckpointMeta, load_checkpoint
from cnnlab.data.loader import BatchLoader
from cnnlab.data.sources import DATA_HELP, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.export.check import DEFAULT_TOLERANCE, CheckFailed
from cnnlab.export.exporter import FORMATS, export_model
from cnnlab.export.metadata import export_metadata, input_shape
from cnnlab.export.onnx_export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, validate_opset
from cnnlab.models.classifier import Classifier

EXAMPLE = """examples:
  cnnlab export runs/lenet5 --format onnx --out lenet5.onnx
  cnnlab export runs/resnet20 --format torchscript --out resnet20.pt
  cnnlab export resnet18-imagenet.safetensors --format onnx --out r18.onnx --data photos/"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as ONNX or TorchScript, checked against PyTorch",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--format", choices=tuple(FORMATS), required=True, help="the file format")
    p.add_argument("--out", required=True, help="the file to write (.onnx, .pt)")
    p.add_argument(
        "--opset",
        type=int,
        help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})",
    )
    p.add_argument("--no-check", action="store_true", help="write the file without checking it")
    p.add_argument("--data", help=f"check on this {DATA_HELP} (default: the one it was trained on)")
    p.add_argument("--data-dir", help="data folder (default $CNNLAB_DATA, else ~/.cache/cnnlab)")
    p.add_argument(
        "--batch-size", type=int, default=256, help="test images in the check (default 256)"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest |difference| of a logit allowed, times the largest |logit| when that "
        f"exceeds 1 (default {DEFAULT_TOLERANCE:g})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _validate(args, out)
    model, meta = load_checkpoint(args.checkpoint)
    batch = None if args.no_check else _first_test_batch(args, model, meta)
    options = {}
    if args.format == "onnx":
        options["opset"] = DEFAULT_OPSET if args.opset is None else args.opset
    try:
        result = export_model(
            model,
            export_metadata(meta),
            args.format,
            out,
            check_batch=batch,
            tolerance=args.tolerance,
            **options,
        )
    except CheckFailed as e:
        print(f"cnnlab: export check failed: {e}; nothing written to {out}", file=sys.stderr)
        return 1
    except OSError as e:
        raise CnnlabError(f"--out {out}: cannot write it ({e.strerror or e})") from None
    opset = f" opset {options['opset']}" if options else ""
    shape = ", ".join(map(str, input_shape(meta)))
    print(
        f"wrote {out} ({args.format}{opset}, {out.stat().st_size:,} bytes): {meta.model}, "
        f"input (N, {shape}) -> logits (N, {meta.num_classes})"
    )
    if result is None:
        print("not checked (--no-check)")
    else:
        print(f"check passed on the {args.data or meta.dataset} test set: {result.describe()}")
    return 0


def _validate(args: argparse.Namespace, out: Path) -> None:
    """Flag mistakes that need no checkpoint, before any work."""
    if args.opset is not None:
        if args.format != "onnx":
            raise CnnlabError(f"--opset {args.opset}: applies to --format onnx only")
        validate_opset(args.opset)
    if args.no_check and (args.data or args.data_dir):
        raise CnnlabError("--data and --data-dir choose the check's data: not with --no-check")
    if args.batch_size < 1:
        raise CnnlabError(f"--batch-size {args.batch_size}: expected >= 1")
    if not args.tolerance >= 0:
        raise CnnlabError(f"--tolerance {args.tolerance}: expected a number >= 0")
    if out.is_dir():
        raise CnnlabError(f"--out {out}: a directory; expected a file name like model.onnx")
    folder = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if folder != out.absolute() and not (folder.is_dir() and os.access(folder, os.W_OK)):
        raise CnnlabError(f"--out {out}: cannot write in {folder}")


def _first_test_batch(
    args: argparse.Namespace, model: Classifier, meta: CheckpointMeta
) -> torch.Tensor:
    """The first --batch-size images of the test set, preprocessed as in training."""
    data = args.data or meta.dataset
    hint = "pass --data (and --data-dir), or --no-check"
    if not data:
        raise CnnlabError(f"{args.checkpoint} does not say what data it was trained on: {hint}")
    try:
        _, test = load_dataset(data, args.data_dir, download=False)
    except CnnlabError as e:
        raise CnnlabError(f"the check needs the test set of {data}: {e}; {hint}") from None
    if len(test) == 0:
        raise CnnlabError(f"the test set of {data} is empty: {hint}")
    if len(test.classes) != meta.num_classes:
        raise CnnlabError(
            f"{data} has {len(test.classes)} classes but the checkpoint predicts {meta.num_classes}"
        )
    c, h, w = test.image_shape
    model.validate_input((c, *meta.preprocessing.input_size(h, w)))
    batch, _ = next(iter(BatchLoader(test, args.batch_size, meta.preprocessing)))
    return batch
