"""No `assert` statement anywhere in cnnlab's source (issue 9): `python -O` strips them, so a
check written as one would vanish there. Every check raises an error of its own instead."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "cnnlab"


def test_the_source_uses_no_assert_statement():
    found = [
        f"{path.relative_to(SRC.parent)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert found == [], f"assert statements vanish under python -O: {found}"
