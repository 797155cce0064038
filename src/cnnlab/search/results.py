"""What a search leaves in OUT: one row per trial (results.csv, results.md), the best trial's
settings as a file `cnnlab train --config` takes (best.json), and plots of the objective
against each hyperparameter (objective_vs_params.png) and over the trials (history.png)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from cnnlab.atomic_file import write_text_atomically
from cnnlab.search.space import SearchSpace
from cnnlab.viz.save import save_figure
from cnnlab.viz.search_plots import plot_history, plot_objective_vs_params

# run-time settings left out of best.json: they are the machine's, not the trial's
NOT_CARRIED = ("out", "device", "threads", "quiet")


@dataclass(frozen=True)
class SearchResult:
    rows: list[dict[str, Any]]  # one per trial that started, by trial number
    best: dict[str, Any] | None  # the best complete trial's row; None before one completes
    objective: str  # the rows' objective column
    out: Path


def trial_status(t: FrozenTrial) -> str:
    """complete | pruned | skipped (a grid point already run) | failed (an error of the run) |
    interrupted (cut off mid-run: runs again on resume) | running | waiting (queued)."""
    if t.state == TrialState.PRUNED:
        return "skipped" if "duplicate_of" in t.user_attrs else "pruned"
    if t.state == TrialState.FAIL:
        return "failed" if "error" in t.user_attrs else "interrupted"
    return t.state.name.lower()


def trial_note(t: FrozenTrial, reruns: Mapping[int, int]) -> str:
    """Why a trial ended as it did; `reruns` maps interrupted trials to their reruns."""
    status = trial_status(t)
    if status == "failed":
        return str(t.user_attrs["error"])
    if status == "skipped":
        return f"grid point already run as trial {t.user_attrs['duplicate_of']}"
    if status == "pruned":
        return f"pruned after epoch {t.user_attrs.get('pruned_after', t.last_step)}"
    if status == "interrupted":
        rerun = reruns.get(t.number)
        return "runs again on resume" if rerun is None else f"rerun as trial {rerun}"
    if "rerun_of" in t.user_attrs:
        return f"rerun of trial {t.user_attrs['rerun_of']}"
    return ""


def trial_rows(trials: Sequence[FrozenTrial], names: Sequence[str], objective: str) -> list[dict]:
    """trial, state, each hyperparameter, the objective (a pruned trial's: its last epoch's),
    epochs run, wall time in seconds, note."""
    reruns = {t.user_attrs["rerun_of"]: t.number for t in trials if "rerun_of" in t.user_attrs}
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.WAITING:
            continue
        wall = None
        if t.datetime_start and t.datetime_complete:
            wall = round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
        rows.append(
            {"trial": t.number, "state": trial_status(t)}
            | {name: t.params.get(name) for name in names}
            | {objective: t.value, "epochs": len(t.intermediate_values), "wall_s": wall}
            | {"note": trial_note(t, reruns)}
        )
    return rows


def best_row(rows: Sequence[dict], objective: str, direction: str) -> dict | None:
    done = [r for r in rows if r["state"] == "complete"]
    if not done:
        return None
    sign = 1 if direction == "minimize" else -1
    return min(done, key=lambda r: (sign * r[objective], r["trial"]))  # ties: the first


def write_results(
    trials: Sequence[FrozenTrial], space: SearchSpace, objective: str, direction: str, out: Path
) -> SearchResult:
    """results.csv, results.md, best.json (when a trial completed) and the two plots."""
    rows = trial_rows(trials, space.names, objective)
    write_text_atomically(out / "results.csv", to_csv(rows))
    write_text_atomically(out / "results.md", to_markdown(rows) + "\n")
    best = best_row(rows, objective, direction)
    if best is not None:
        config = json.loads((out / f"trial-{best['trial']:03d}" / "config.json").read_text())
        settings = {k: v for k, v in config.items() if k not in NOT_CARRIED}
        write_text_atomically(out / "best.json", json.dumps(settings, indent=2) + "\n")
    if any(r[objective] is not None for r in rows):
        log_scale = {p.name for p in space.params if p.log}
        categorical = {p.name for p in space.params if p.type == "categorical"}
        fig = plot_objective_vs_params(rows, space.names, objective, log_scale, categorical)
        save_figure(fig, out / "objective_vs_params.png")
        save_figure(plot_history(rows, objective, direction), out / "history.png")
    return SearchResult(rows, best, objective, out)


def to_csv(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: Sequence[dict]) -> str:
    if not rows:
        return "no trials yet"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    lines += ["| " + " | ".join(_cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")
