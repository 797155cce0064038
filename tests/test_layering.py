"""Lower layers never import higher ones (docs/ARCHITECTURE.md, "One direction of data")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"

# package -> the cnnlab packages it must not import
FORBIDDEN = {
    "layers": {"models", "training", "analysis", "viz", "cli", "registry", "checkpoint", "data"},
    "data": {"layers", "models", "training", "analysis", "viz", "cli", "registry", "checkpoint"},
    "models": {"training", "analysis", "viz", "cli", "registry", "checkpoint"},
    "analysis": {"training", "cli"},
    "viz": {"training", "cli"},
    "training": {"cli"},
    "search": {"cli"},
    "speed": {"training", "search", "viz", "cli"},
    "experiments": {"cli"},
    "serve": {"training", "cli"},
    "export": {"training", "search", "viz", "experiments", "cli"},
    "checkpoint": {"training", "cli"},
    "registry": {"training", "cli", "checkpoint"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n.split(".")[1] for n in names if n.startswith("cnnlab.") and n.count(".") >= 1}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    target = SRC / package
    files = list(target.rglob("*.py")) if target.is_dir() else [SRC / f"{package}.py"]
    assert files
    for path in files:
        bad = _imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
