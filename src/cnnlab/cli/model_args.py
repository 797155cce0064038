"""`--model-arg KEY=VALUE` options, shared by the commands that build a model."""

from __future__ import annotations

import json

from cnnlab.errors import CnnlabError


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
