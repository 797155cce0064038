"""`cnnlab summary MODEL`: per-layer shapes, parameters, connections, multiply-adds and
receptive fields; `--paper` adds the paper's published numbers beside ours."""

from __future__ import annotations

import argparse
import json

from cnnlab.analysis.paper import compare, measure
from cnnlab.analysis.receptive_field import describe_field
from cnnlab.analysis.summary import summarize
from cnnlab.cli.model_args import add_model_arg_option, parse_model_args
from cnnlab.cli.paper_cmd import comparison_rows
from cnnlab.cli.tables import FORMATS, render
from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model

EXAMPLE = "example: cnnlab summary alexnet --paper   |   cnnlab summary vgg16 --depth 2"
NUMBERS = ("params", "connections", "macs", "rf")


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
    p.add_argument("--input", help="input size CxHxW (default: the paper's, see `cnnlab models`)")
    p.add_argument("--num-classes", type=int, help="default: the paper's")
    p.add_argument("--depth", type=int, default=1, help="expand nested blocks this deep")
    add_model_arg_option(p, "width_mult=0.5")
    p.add_argument("--paper", action="store_true", help="also the paper's published numbers")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    shape = parse_shape(args.input) if args.input else None
    model = create_model(
        args.model,
        num_classes=args.num_classes,
        in_chans=shape[0] if shape else None,
        **parse_model_args(args.model_arg),
    )
    summary = summarize(model, shape, name=args.model, depth=args.depth)
    figures = comparison_rows(compare(args.model), args.format != "table") if args.paper else []
    if args.format == "json":
        out = summary.to_dict()
        if args.paper:
            out["paper"] = figures
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        dict(
            name=r.name,
            type=r.type,
            output_shape=r.output_shape,
            params=r.params,
            connections=r.connections,
            macs=r.macs,
            rf=describe_field(r.receptive_field) if r.output_shape else "",
        )
        for r in summary.layers
    ]
    total = summary.total
    rows.append(dict(name="total", type="", output_shape="", **total, rf=""))
    print(render(rows, args.format, right=NUMBERS))
    if args.format == "table":
        c, h, w = summary.input
        shares = measure(model, summary.input)
        print(
            f"\n{args.model}, input {c}x{h}x{w}: {total['params']:,} trainable parameters, "
            f"{total['connections']:,} connections, {total['macs']:,} multiply-adds per image"
            f"\nconvolution layers hold {shares['params_conv_share']:.1%} of the parameters "
            f"and do {shares['macs_conv_share']:.1%} of the multiply-adds; fully connected "
            f"layers {shares['params_fc_share']:.1%} and {shares['macs_fc_share']:.1%}"
            "\nrf: receptive field, the input pixels one unit sees (all: the whole image)"
        )
    if args.paper:
        print()
        if not figures:
            print(f"{args.model}: no published figures recorded (`cnnlab paper` lists them)")
        else:
            print(render(figures, args.format, right=("paper", "ours", "ours_exact")))
    return 0
