"""Writing figures and raw maps: atomically, so an interrupted run leaves no half file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnlab.atomic_file import write_atomically


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    return Path(path)


def save_array(array: np.ndarray | torch.Tensor, path: str | Path) -> Path:
    """`array` as a .npy file (float32 for tensors)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    write_atomically(path, write)
    return Path(path)
