"""`cnnlab models [PATTERN]`: the registered architectures."""

from __future__ import annotations

import argparse

from cnnlab.cli.tables import FORMATS, render
from cnnlab.registry import get_spec, list_models

EXAMPLE = "example: cnnlab models 'lenet*' --format json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo", description=__doc__, epilog=EXAMPLE)
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter (default *)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models(args.pattern):
        spec = get_spec(name)
        rows.append({"name": name, "family": spec.family, "description": spec.description})
    print(
        render(rows, args.format)
        if rows or args.format == "json"
        else f"no model matches {args.pattern!r}"
    )
    return 0
