"""Plots of a hyperparameter search from its results rows (one dict per trial with `state`,
`trial`, each hyperparameter and the objective, a fraction such as an error): the objective
against each hyperparameter, and the history of the objective over the trials."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# how each state is drawn; a pruned trial's objective is that of the last epoch it ran
MARKERS = {"complete": ("o", "complete"), "pruned": ("x", "pruned (last epoch run)")}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_objective_vs_params(
    rows: Sequence[dict[str, Any]],
    names: Sequence[str],
    objective: str,
    log_scale: Collection[str] = (),
    categorical: Collection[str] = (),
) -> Figure:
    """One panel per hyperparameter: each trial's objective (in %) at its value. Numbers on a
    linear axis (logarithmic for `log_scale`); `categorical` names and values that are not
    numbers as evenly spaced categories, in order of appearance."""
    fig = Figure(figsize=(4 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        values = [r[name] for r in rows if r[objective] is not None]
        numeric = name not in categorical and all(map(_is_number, values))
        categories = None if numeric else list(dict.fromkeys(map(str, values)))
        for state, (marker, label) in MARKERS.items():
            points = [r for r in rows if r["state"] == state and r[objective] is not None]
            if not points:
                continue
            xs = [r[name] if categories is None else categories.index(str(r[name])) for r in points]
            ax.plot(xs, [100 * r[objective] for r in points], marker, ls="none", label=label)
        if categories is not None:
            ax.set_xticks(range(len(categories)), categories)
        elif name in log_scale:
            ax.set_xscale("log")
        ax.set(xlabel=name, ylabel=f"{objective} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return fig


def plot_history(rows: Sequence[dict[str, Any]], objective: str, direction: str) -> Figure:
    """Each trial's objective (in %) by trial number, and the best complete trial so far."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax: Axes = fig.subplots()
    for state, (marker, label) in MARKERS.items():
        points = [r for r in rows if r["state"] == state and r[objective] is not None]
        if points:
            ax.plot(
                [r["trial"] for r in points],
                [100 * r[objective] for r in points],
                marker,
                ls="none",
                label=label,
            )
    best, steps = None, []
    pick = min if direction == "minimize" else max
    for r in rows:
        if r["state"] == "complete":
            best = r[objective] if best is None else pick(best, r[objective])
            steps.append((r["trial"], 100 * best))
    if steps:
        ax.step(*zip(*steps), where="post", label="best so far")
    ax.set(xlabel="trial", ylabel=f"{objective} (%)", title=f"search history ({direction})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
