"""`cnnlab bench MODEL`: training and inference throughput, batch-1 latency, peak memory, and
the FLOP rate achieved as a fraction of this machine's measured peak.

The input is random, of the shape the model sees when trained on --data (after the model's
recipe preprocessing: MNIST's 28x28 becomes 32x32 for LeNet-5), or of the model's own input
size. The peaks (FP32 matrix multiply; a 3x3 convolution's forward and backward in
channels_last) are measured on first use and cached per machine, torch version and threads.
"""

from __future__ import annotations

import argparse
import json

import torch

from cnnlab.cli.model_args import add_model_arg_option, parse_model_args
from cnnlab.cli.tables import FORMATS, render
from cnnlab.cli.training_options import add_arithmetic_options
from cnnlab.data import cifar10, mnist
from cnnlab.data.sources import DATA_HELP, load_dataset
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.precision import autocast_dtype
from cnnlab.registry import create_model, get_spec
from cnnlab.speed.peak import cache_file, machine_peak
from cnnlab.speed.throughput import TRAIN_FORWARD_MULTIPLE, BenchSettings, bench

EXAMPLE = """examples:
  cnnlab bench lenet5 --data mnist --batch-size 256
  cnnlab bench resnet20 --data cifar10 --threads 2 --format json
  cnnlab bench vgg11_bn_small --precision bf16 --no-channels-last"""

# the shape and class count of the named datasets, known without reading them
KNOWN_DATA = {
    "mnist": ((1, *mnist.IMAGE_SIZE), len(mnist.CLASSES)),
    "cifar10": (cifar10.IMAGE_SHAPE, len(cifar10.CLASSES)),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure a model's speed against this machine's peak",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a registered model name (see `cnnlab models`)")
    p.add_argument("--data", help=f"input shape of this {DATA_HELP} (default: the model's own)")
    p.add_argument("--batch-size", type=int, help="training batch (default: the recipe's)")
    p.add_argument(
        "--eval-batch-size", type=int, default=1024, help="inference batch (default 1024)"
    )
    p.add_argument(
        "--steps", type=int, default=20, help="timed training steps, after warm-up (default 20)"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    add_arithmetic_options(p, given_only=False)
    add_model_arg_option(p, "norm=none")
    p.add_argument("--remeasure-peak", action="store_true", help="measure the peaks again")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=run)


def data_shape(data: str) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) of one image of `data` and its number of classes."""
    if data in KNOWN_DATA:
        return KNOWN_DATA[data]
    train, _ = load_dataset(data)
    return train.image_shape, len(train.classes)


def run(args: argparse.Namespace) -> int:
    spec = get_spec(args.model)
    device = resolve_device(args.device)
    autocast_dtype(args.precision, device)  # an unsupported precision fails before any work
    if args.threads is not None:
        if args.threads < 1:
            raise CnnlabError(f"--threads {args.threads}: expected a positive number")
        torch.set_num_threads(args.threads)
    overrides = parse_model_args(args.model_arg)
    if args.data:
        (c, h, w), classes = data_shape(args.data)
        model = create_model(args.model, num_classes=classes, in_chans=c, **overrides)
        shape = (c, *spec.recipe.preprocessing.input_size(h, w))
    else:
        model = create_model(args.model, **overrides)
        shape = tuple(model.input_size)
    settings = BenchSettings(
        device=device,
        batch_size=args.batch_size or spec.recipe.batch_size,
        eval_batch_size=args.eval_batch_size,
        steps=args.steps,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    found = bench(model, shape, settings)  # before the peaks: ru_maxrss only grows
    peak, cached = machine_peak(device, remeasure=args.remeasure_peak)
    out = {
        "model": args.model,
        "input": list(shape),
        "device": str(device),
        "machine": peak.machine,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "compile": args.compile,
        "channels_last": args.channels_last,
        "batch_size": settings.batch_size,
        "eval_batch_size": settings.eval_batch_size,
        "steps": settings.steps,
        "train_images_per_s": round(found.train_images_per_s),
        "infer_images_per_s": round(found.infer_images_per_s),
        "latency_ms_median": round(found.latency.median_ms, 3),
        "latency_ms_p95": round(found.latency.p95_ms, 3),
        "latency_runs": found.latency.runs,
        "peak_memory_mb": round(found.peak_memory_mb, 1),
        "peak_memory_kind": found.peak_memory_kind,
        "macs_per_image": found.macs_per_image,
        "train_flop_per_image": found.train_flop_per_image,
        "train_gflops": round(found.train_gflops, 2),
        "infer_gflops": round(found.infer_gflops, 2),
        "train_fraction_of_conv_peak": round(found.train_gflops / peak.conv_gflops, 4),
        "matmul_peak_gflops": round(peak.matmul_gflops, 1),
        "conv_peak_gflops": round(peak.conv_gflops, 1),
        "peak_cached": cached,
    }
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    rows = [{"measure": key, "value": value} for key, value in out.items()]
    print(render(rows, args.format))
    if args.format == "table":
        where = f"from the cache {cache_file()}" if cached else f"now, cached in {cache_file()}"
        print(
            f"\nFLOP: 2 per multiply-add; a training step counts {TRAIN_FORWARD_MULTIPLE}x the "
            "forward pass (forward + backward). Peaks: FP32 matrix multiply, and a 3x3 "
            "convolution's forward + backward in channels_last, measured with "
            f"threads={peak.threads} ({where}; --remeasure-peak measures again)."
        )
    return 0
