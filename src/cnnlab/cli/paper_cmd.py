"""`cnnlab paper [PATTERN]`: the papers' published numbers beside ours, model by model."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cnnlab.analysis.paper import Comparison, compare, describe
from cnnlab.cli.tables import FORMATS, render
from cnnlab.errors import CnnlabError
from cnnlab.registry import get_spec, list_models

EXAMPLE = "example: cnnlab paper 'resnet*' --format markdown"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "paper",
        help="published parameters and multiply-adds beside ours",
        description=__doc__,
        epilog=EXAMPLE,
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter (default *)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=run)


def comparison_rows(comparisons: Sequence[Comparison], conventions: bool = True) -> list[dict]:
    """One row per figure; `conventions` adds the (long) note on what was counted."""
    rows = [
        {
            "model": c.model,
            "configuration": c.configuration,
            "quantity": c.figure.quantity,
            "paper": c.figure.printed,
            "ours": c.rendered,
            "ours_exact": round(c.computed, 6) if isinstance(c.computed, float) else c.computed,
            "match": "yes" if c.matches else "NO",
            "source": c.figure.source,
            "convention": c.figure.note or describe(c.figure.quantity),
        }
        for c in comparisons
    ]
    if not conventions:
        for row in rows:
            del row["convention"]
    return rows


def run(args: argparse.Namespace) -> int:
    names = [n for n in list_models(args.pattern) if get_spec(n).published]
    if not names:
        raise CnnlabError(f"no model matching {args.pattern!r} has published figures")
    comparisons = [c for name in names for c in compare(name)]
    rows = comparison_rows(comparisons, conventions=args.format != "table")
    print(render(rows, args.format, right=("paper", "ours", "ours_exact")))
    misses = sum(r["match"] != "yes" for r in rows)
    if args.format == "table":
        print(f"\n{len(rows) - misses} of {len(rows)} published figures reproduced as printed")
    return 0
