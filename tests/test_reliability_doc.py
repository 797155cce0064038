"""docs/reliability.md names only tests that exist, its guarantees table is the one
tools/reliability_doc.py holds, and the tool turns the tests' JSON figures into the page
(or says "not run" when a file is missing)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "reliability_doc.py"
DOC = REPO / "docs" / "reliability.md"
NAMED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("reliability_doc", TOOL)
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "reliability_doc", module)  # its dataclasses look it up
        spec.loader.exec_module(module)
        yield module


def defined_tests(path: Path) -> set[str]:
    """The names of the test functions `path` defines (at module level or in a class)."""
    if not path.is_file():
        return set()
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def missing(names: list[str]) -> list[str]:
    """Those of `names` (path::function) whose file does not define the function."""
    return [n for n in names if n.split("::")[1] not in defined_tests(REPO / n.split("::")[0])]


def test_every_test_in_the_guarantees_table_exists(tool):
    named = [t for g in tool.GUARANTEES for t in g.tests]
    assert len(named) > len(tool.GUARANTEES) and missing(named) == []
    gone = ["tests/test_checkpoint.py::test_that_was_renamed", "tests/nowhere.py::test_x"]
    assert missing(gone) == gone  # the check itself can fail


def test_every_test_the_page_names_exists():
    named = ["::".join(m) for m in NAMED.findall(DOC.read_text())]
    assert len(named) >= 20 and missing(named) == [], "run: python tools/reliability_doc.py DIR"


def test_the_page_holds_the_current_guarantees_table(tool):
    assert tool.guarantees_table() in DOC.read_text(), "run: python tools/reliability_doc.py DIR"
    names = [g.name for g in tool.GUARANTEES]
    for part in ("Crash-safe", "Numerical", "Hostile", "corruption", "Exit code 3", "Property"):
        assert any(part in name for name in names), part
    assert any("load and fuzz" in n for n in names) and any("Disk full" in n for n in names)


def test_missing_figures_are_shown_as_not_run(tool, tmp_path):
    page = tool.render_doc(tmp_path)
    assert page.count("Not run: no `") == len(tool.FIGURES)
    assert "kills survived: not run" in page and "requests served under load" in page
    assert tool.guarantees_table() in page


def test_the_figures_come_from_the_tests_json(tool, tmp_path):
    kill = {"test": "tests/training/test_kill_resume.py::t", "kills": 10, "steps": 160}
    kill |= {"final_weights_bit_identical": True, "moments": []}
    (tmp_path / "kill_resume.json").write_text(json.dumps(kill))
    case = {"id": "checkpoint-wrong-types", "known_failure": "CheckpointMeta checks no types"}
    hostile = {"inputs_tried": 63, "refused_cleanly": 61, "payloads_run": 0, "cases": [case]}
    (tmp_path / "hostile_inputs.json").write_text(json.dumps(hostile))
    page = tool.render_doc(tmp_path)
    assert "kills survived: 10 (final weights bit-identical: yes)" in page
    assert "hostile inputs tried: 63 (61 refused cleanly)" in page
    assert "requests served under load and fuzz: not run" in page
    assert "`checkpoint-wrong-types`: CheckpointMeta checks no types" in page
    assert "python -m pytest tests/training/test_kill_resume.py`" in page
