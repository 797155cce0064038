"""Printing rows of dicts as an aligned table, Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

FORMATS = ("table", "markdown", "json", "csv")


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


def render(rows: Sequence[dict[str, Any]], fmt: str, right: Sequence[str] = ()) -> str:
    """Rows (all with the same keys) in `fmt`; `right` names the right-aligned columns."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2)
    if not rows:
        return ""
    keys = list(rows[0])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(keys)
        for row in rows:
            writer.writerow(
                ["x".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in row.values()]
            )
        return out.getvalue().rstrip("\n")
    cells = [[_cell(row[k]) for k in keys] for row in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(keys) + " |"]
        lines.append("|" + "|".join("---:" if k in right else "---" for k in keys) + "|")
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if k in right else v.ljust(w) for v, w, k in zip(values, widths, keys)
        ).rstrip()

    return "\n".join([line(keys), line(["-" * w for w in widths]), *map(line, cells)])
