"""`cnnlab predict CHECKPOINT IMAGE...`: the top classes of image files.

Each image (PNG or JPEG, any size or colour) is brought to the model's input
the way its training data were made: for digit models, grey, the digit's box
scaled into 20x20 and centred by its centre of mass in 28x28, as MNIST was.
"""

from __future__ import annotations

import argparse
import json

import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli.image_inputs import load_batch
from cnnlab.cli.tables import render
from cnnlab.device import resolve_device

EXAMPLE = "example: cnnlab predict runs/lenet5/checkpoints/best.safetensors digit.png --top-k 3"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device)
    batch = load_batch(args.images, meta, device)
    probs = model(batch).softmax(dim=1)
    k = max(1, min(args.top_k, meta.num_classes))
    top = probs.topk(k, dim=1)
    results = [
        {
            "image": path,
            "top": [
                {"class": meta.classes[i], "probability": p}
                for p, i in zip(values.tolist(), indices.tolist())
            ],
        }
        for path, values, indices in zip(args.images, top.values, top.indices)
    ]
    if args.format == "json":
        print(json.dumps(results, indent=2))
    else:
        rows = [
            {
                "image": r["image"],
                **{
                    f"#{j + 1}": f"{t['class']} ({t['probability']:.1%})"
                    for j, t in enumerate(r["top"])
                },
            }
            for r in results
        ]
        print(render(rows, "table"))
    return 0
