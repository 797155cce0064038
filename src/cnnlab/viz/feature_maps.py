"""The feature maps of every stage of a network for one input, as image grids.

The hierarchy the course shows (edges in the first layers, parts and then objects in
the later ones): Zeiler and Fergus, "Visualizing and understanding convolutional
networks", ECCV 2014, Section 4 and Fig. 2, looked at projections of single
activations; here the activations themselves are shown, as in LeCun et al.,
"Gradient-based learning applied to document recognition", Proc. IEEE 1998, Fig. 13.

Formula: for stage s with output A_s (C, H, W) for the input x, each shown channel k is
scaled on its own, (A_s[k] - min A_s[k]) / (max A_s[k] - min A_s[k]) (a constant channel,
such as one that a ReLU silenced, is shown black), in grey, with black = its lowest value.
Maps of 1x1 (one value per channel, as LeNet-5's C5) share one scale across the channels
shown, so that they read as a bar code of the stage's activations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.viz.filters import tile_grid

BORDER_COLOUR = "#b8d0e8"  # pale blue: no grey value of a map looks like a border


def feature_maps(
    model: nn.Module, x: torch.Tensor, stages: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """{stage name: its output (C, H, W)} for one example x (C, H, W) or (1, C, H, W).

    Captured by forward hooks on `stages` (default `model.stages`), removed afterwards;
    float32, detached CPU copies taken when each stage ran (later in-place ops such as
    ReLU(inplace=True) do not alter them). Runs without gradients in the model's current
    mode (eval mode is the caller's job) and leaves the mode as it was.
    """
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise CnnlabError(
            f"input of shape {tuple(x.shape)}: expected one example, (C, H, W) or (1, C, H, W)"
        )
    allowed = tuple(getattr(model, "stages", ()))
    names = tuple(stages) if stages is not None else allowed
    if not names:
        raise CnnlabError(f"{type(model).__name__} names no stages: expected model.stages")
    modules = {}
    for name in names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError:
            raise CnnlabError(
                f"unknown stage {name!r}: expected one of {', '.join(allowed) or '(none)'}"
            ) from None
    outputs: dict[str, torch.Tensor | None] = {}

    def capture(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if name in outputs:
                return  # a module called twice: keep its first output
            ok = isinstance(output, torch.Tensor)
            outputs[name] = output.detach()[0].float().cpu().clone() if ok else None  # (C, H, W)

        return hook

    was_training = model.training
    hooks = [modules[name].register_forward_hook(capture(name)) for name in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for name in names:
        out = outputs.get(name)
        if out is None or out.ndim != 3:
            got = "did not run" if name not in outputs else "is not an (N, C, H, W) tensor"
            raise CnnlabError(f"stage {name!r} {got}: expected an (N, C, H, W) feature map")
    return {name: outputs[name] for name in names}


def channel_grid(
    fmap: torch.Tensor, max_channels: int, ncols: int, fill: float = np.nan
) -> np.ndarray:
    """(C, H, W) -> a grey mosaic of its first `max_channels` channels, each in [0, 1].

    Each channel is scaled on its own; 1x1 maps (a single value each) share one scale.
    Borders and empty cells are `fill` (NaN: drawn in BORDER_COLOUR, apart from any grey).
    """
    a = fmap[:max_channels].float().numpy()
    axes = (1, 2) if a.shape[1] * a.shape[2] > 1 else (0, 1, 2)  # 1x1 maps: one shared scale
    lo = a.min(axis=axes, keepdims=True)
    span = a.max(axis=axes, keepdims=True) - lo
    tiles = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), 0.0)
    return tile_grid(tiles.astype(np.float32), ncols, fill=fill)


def plot_feature_maps(
    maps: Mapping[str, torch.Tensor], max_channels: int = 16, ncols: int = 8, title: str = ""
) -> Figure:
    """One panel per stage, top to bottom, titled with its name and shape (C x H x W);
    its first `max_channels` channels as a grid of grey images, `ncols` to a row."""
    if not maps:
        raise CnnlabError("no feature maps to plot: expected {stage name: (C, H, W)}")
    if max_channels < 1:
        raise CnnlabError(f"max_channels={max_channels}: expected a positive integer")
    grids, titles = [], []
    for name, fmap in maps.items():
        if fmap.ndim != 3:
            raise CnnlabError(f"map {name!r} of shape {tuple(fmap.shape)}: expected (C, H, W)")
        c, h, w = fmap.shape
        k = min(c, max_channels)
        grids.append(channel_grid(fmap, k, ncols))
        shown = "" if k == c else f" (first {k} of {c} channels)"
        titles.append(f"{name}: {c}x{h}x{w}{shown}")
    width = 10.0
    ratios = [max(g.shape[0] / g.shape[1], 0.08) for g in grids]
    height = sum(width * r + 0.35 for r in ratios) + (0.4 if title else 0)
    fig = Figure(figsize=(width, min(height, 40)), layout="constrained")
    axes = fig.subplots(len(grids), 1, squeeze=False, height_ratios=ratios)[:, 0]
    cmap = matplotlib.colormaps["gray"].with_extremes(bad=BORDER_COLOUR)
    for ax, grid, text in zip(axes, grids, titles):
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(text, fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig
