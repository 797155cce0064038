"""Writes tests/models/recorded_params.json: every registered model's trainable parameters.

usage: python tools/record_params.py

The interface test compares each model with this record, so a change to any
architecture shows up as a failing test until the record is regenerated on
purpose (and the diff of this file shows which models changed, and by how much).
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnlab import create_model, list_models

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "recorded_params.json"


def main() -> None:
    counts = {
        name: sum(p.numel() for p in create_model(name).parameters() if p.requires_grad)
        for name in list_models()
    }
    OUT.write_text(json.dumps(counts, indent=1) + "\n")
    print(f"wrote {OUT}: {len(counts)} models")


if __name__ == "__main__":
    main()
