"""Training curves: loss and error per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure


def plot_curves(history: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Training loss (left) and top-1 error of each split (right) against the epoch."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_err = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    if all(row.get("test_loss") is not None for row in history):
        ax_loss.plot(epochs, [row["test_loss"] for row in history], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for split, marker in (("train", "o-"), ("val", "^-"), ("test", "s-")):
        values = [row.get(f"{split}_top1_error") for row in history]
        if all(v is not None for v in values):
            ax_err.plot(epochs, [100 * v for v in values], marker, label=split)
    ax_err.set(xlabel="epoch", ylabel="top-1 error (%)", title="error", yscale="log")
    ax_err.legend()
    if title:
        fig.suptitle(title)
    return fig
