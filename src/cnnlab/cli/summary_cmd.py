"""`cnnlab summary MODEL`: per-layer shapes, parameters, connections and multiply-adds."""

from __future__ import annotations

import argparse
import json

from cnnlab.analysis.summary import summarize
from cnnlab.cli.tables import FORMATS, render
from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model

EXAMPLE = "example: cnnlab summary lenet5_1998 --format markdown"
NUMBERS = ("params", "connections", "macs")


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1x32x32' -> (1, 32, 32)."""
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CnnlabError(f"--input {text!r}: expected CxHxW, for example 1x32x32") from None
    if min(c, h, w) < 1:
        raise CnnlabError(f"--input {text!r}: every size must be positive")
    return c, h, w


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary", help="per-layer table of a model", description=__doc__, epilog=EXAMPLE
    )
    p.add_argument("model", help="a registered model name (see `cnnlab models`)")
    p.add_argument("--input", help="input size CxHxW (default: the paper's)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--depth", type=int, default=1, help="expand nested blocks this deep")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    shape = parse_shape(args.input) if args.input else None
    in_chans = shape[0] if shape else 1
    model = create_model(args.model, num_classes=args.num_classes, in_chans=in_chans)
    summary = summarize(model, shape, name=args.model, depth=args.depth)
    if args.format == "json":
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    rows = [
        dict(
            name=r.name,
            type=r.type,
            output_shape=r.output_shape,
            params=r.params,
            connections=r.connections,
            macs=r.macs,
        )
        for r in summary.layers
    ]
    total = summary.total
    rows.append(dict(name="total", type="", output_shape="", **total))
    print(render(rows, args.format, right=NUMBERS))
    if args.format == "table":
        c, h, w = summary.input
        print(
            f"\n{args.model}, input {c}x{h}x{w}: {total['params']:,} trainable parameters, "
            f"{total['connections']:,} connections, {total['macs']:,} multiply-adds per image"
        )
    return 0
