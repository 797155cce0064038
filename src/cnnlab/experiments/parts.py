"""An experiment's finished parts, kept in DIR/parts/ so that an interrupted run continues.

An experiment at its paper budget is hours of independent trainings (one network, one
learning rate). Each one's result is written to DIR/parts/KEY.json, atomically, with the
budget it ran at and the seconds it took. Run again with the same --out, the experiment
reads the finished parts back instead of training them again, and its report counts their
seconds; a part saved at another budget, or damaged, is trained afresh.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.atomic_file import write_text_atomically

log = logging.getLogger(__name__)

FOLDER = "parts"


class FinishedParts:
    """The parts of one experiment's run in `out` at `budget` (any value with a stable
    repr, such as the experiment's Budget dataclass)."""

    def __init__(self, out: Path, budget: object) -> None:
        self.folder = Path(out) / FOLDER
        self.budget = repr(budget)
        self.reused_seconds = 0.0  # what the reused parts took when they ran

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        """The saved result of part `key` at this budget, or `compute()`'s (a JSON value),
        saved before it is returned."""
        path = self.folder / (re.sub(r"[^A-Za-z0-9.]+", "-", key).strip("-") + ".json")
        saved = _read(path)
        if saved is not None and saved.get("budget") == self.budget and saved.get("key") == key:
            self.reused_seconds += saved["seconds"]
            log.info("%s: finished in an earlier run, read back from %s", key, path)
            return saved["result"]
        start = time.perf_counter()
        result = compute()
        record = {"key": key, "budget": self.budget, "seconds": time.perf_counter() - start,
                  "result": result}  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(record) + "\n")
        return result


def _read(path: Path) -> dict | None:
    """A part's record, or None when there is none or it cannot be read."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("seconds"), int | float):
        return None
    return record if "result" in record else None
