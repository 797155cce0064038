"""The confusion matrix as a figure."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], title: str = "") -> Figure:
    """Rows are true classes, columns predictions; counts are printed in each cell."""
    n = len(classes)
    counts = confusion.cpu().numpy()
    size = max(4.0, 0.45 * n + 2)
    fig = Figure(figsize=(size, size), layout="constrained")
    ax = fig.subplots()
    shown = counts.astype(float)
    shown[shown == 0] = float("nan")  # leave empty cells white
    ax.imshow(shown, cmap="Blues", norm="log")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    color = "white" if i == j else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=color
                    )
        ax.set_xticks(range(n), classes, rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    return fig
