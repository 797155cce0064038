"""docs/models.md is what tools/models_doc.py generates from the registry today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "models_doc.py"


def test_models_doc_is_up_to_date():
    spec = importlib.util.spec_from_file_location("models_doc", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUT.read_text() == module.render_doc(), "run: python tools/models_doc.py"
