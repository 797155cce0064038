"""docs/experiments/README.md is what tools/experiments_doc.py makes of the registry and
the committed reports: every experiment has a report, and the table shows its budget and
verdict as the report states them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "experiments_doc.py"


def test_experiments_doc_is_up_to_date():
    spec = importlib.util.spec_from_file_location("experiments_doc", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUT.read_text() == module.render_doc(), "run: python tools/experiments_doc.py"
