"""`--model-arg KEY=VALUE` options, shared by the commands that build a model."""

from __future__ import annotations

import argparse
import json

from cnnlab.errors import CnnlabError


def add_model_arg_option(p: argparse.ArgumentParser, example: str = "norm=batch") -> None:
    """`--model-arg KEY=VALUE`, repeatable, into `args.model_arg` (read by parse_model_args)."""
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"set a field of the model's config (repeatable), e.g. {example}",
    )


def parse_model_args(items: list[str]) -> dict[str, object]:
    """['norm=batch', 'dropout=0.3'] -> {'norm': 'batch', 'dropout': 0.3}."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CnnlabError(f"--model-arg {item!r}: expected KEY=VALUE, for example norm=batch")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
