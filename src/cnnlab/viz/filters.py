"""What the first layer learned: its kernels as an image grid, and every layer's weights.

The first convolution's kernels are the one set of weights that can be looked at
directly as pictures, since they act on pixels (Krizhevsky, Sutskever and Hinton,
"ImageNet classification with deep convolutional neural networks", NIPS 2012,
Section 6.1 and Fig. 3; Zeiler and Fergus, "Visualizing and understanding
convolutional networks", ECCV 2014, Section 4).

Display formula: each filter w (all of its input channels together) is scaled on its own,
    tile = (w - min(w)) / (max(w) - min(w)),
so 0 is its most negative weight and 1 its most positive (a constant filter shows as 0.5).
One filter scale per filter keeps the colour balance of a 3-channel kernel. Kernels with 3
input channels are shown in colour (RGB), those with 1 channel in grey; any other channel
count is shown as one grey tile per (filter, channel): one row per filter, one column per
input channel (the channel mean would hide kernels whose channels cancel).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import CnnlabError

MAX_HISTOGRAMS = 16  # panels of plot_weight_histograms before it takes evenly spaced layers


def execution_order(
    model: nn.Module, input_size: tuple[int, ...] | None = None
) -> list[tuple[str, nn.Module]]:
    """The named submodules in the order their forward first ran, for one zero example.

    Runs in eval mode without gradients (no batch-norm statistics change); the mode is
    restored and every hook removed afterwards. Modules that did not run are left out.
    """
    shape = tuple(input_size or getattr(model, "input_size", ()))
    if len(shape) != 3:
        raise CnnlabError(
            f"input size {shape}: expected (C, H, W); pass input_size for a model without one"
        )
    order: dict[nn.Module, int] = {}

    def record(module: nn.Module, inputs: tuple, output: object) -> None:
        order.setdefault(module, len(order))  # returns None: the output stays as it is

    hooks = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=device))  # (1, C, H, W)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    named = [(name, m) for name, m in model.named_modules() if m in order]
    return sorted(named, key=lambda item: order[item[1]])


def _is_conv(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.Conv2d) or (isinstance(weight, torch.Tensor) and weight.ndim == 4)


def first_conv(
    model: nn.Module, input_size: tuple[int, int, int] | None = None
) -> tuple[str, torch.Tensor]:
    """(name, weight (out, in, kh, kw)) of the first convolution a forward pass runs.

    Found by execution order (one forward of a zero example at `input_size`, default the
    model's), not registration order. The weight is a detached float32 CPU copy.
    """
    for name, module in execution_order(model, input_size):
        if _is_conv(module):
            return name, module.weight.detach().float().cpu().clone()
    raise CnnlabError(f"{type(model).__name__} ran no convolution: expected at least one Conv2d")


def tile_grid(tiles: np.ndarray, ncols: int, border: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tiles (K, h, w) or (K, h, w, 3) -> one image with `border` pixels around every tile.

    Shape: (rows * (h + border) + border, ncols * (w + border) + border[, 3]), rows =
    ceil(K / ncols); borders and empty cells are `fill`.
    """
    k, h, w = tiles.shape[:3]
    ncols = max(1, min(ncols, k))
    rows = math.ceil(k / ncols)
    grid = np.full(
        (rows * (h + border) + border, ncols * (w + border) + border, *tiles.shape[3:]),
        fill,
        dtype=np.float32,
    )
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        top, left = border + r * (h + border), border + c * (w + border)
        grid[top : top + h, left : left + w] = tile
    return grid


def normalize_filters(weight: torch.Tensor) -> np.ndarray:
    """(out, in, kh, kw) -> the same shape in [0, 1], each filter scaled on its own."""
    w = weight.detach().float().cpu().numpy()
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (w - lo) / safe, 0.5).astype(np.float32)


def filter_grid(weight: torch.Tensor, ncols: int | None = None, border: int = 1) -> np.ndarray:
    """Kernels (out, in, kh, kw) -> a float32 image in [0, 1] with 1-pixel white borders.

    in == 3: (H, W, 3) colour tiles, one per filter; in == 1: (H, W) grey tiles, one per
    filter; both in a near-square grid (ncols = ceil(sqrt(out)) unless given). Any other
    `in`: (H, W) grey, one row per filter and one column per input channel.
    """
    if weight.ndim != 4:
        raise CnnlabError(
            f"weight of shape {tuple(weight.shape)}: expected (out, in, kh, kw) convolution kernels"
        )
    out_ch, in_ch, kh, kw = weight.shape
    w = normalize_filters(weight)
    if in_ch == 3:
        tiles = w.transpose(0, 2, 3, 1)  # (out, kh, kw, 3)
        cols = ncols or math.ceil(math.sqrt(out_ch))
    elif in_ch == 1:
        tiles = w[:, 0]  # (out, kh, kw)
        cols = ncols or math.ceil(math.sqrt(out_ch))
    else:
        tiles = w.reshape(out_ch * in_ch, kh, kw)  # filter-major: row o holds filter o
        cols = in_ch
    return tile_grid(tiles, cols, border=border)


def plot_filters(
    model: nn.Module, title: str = "", input_size: tuple[int, int, int] | None = None
) -> Figure:
    """The first convolution's kernels as one image grid."""
    name, weight = first_conv(model, input_size)
    grid = filter_grid(weight)
    out_ch, in_ch, kh, kw = weight.shape
    fig = Figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    layout = "" if in_ch in (1, 3) else ", one row per filter, one column per input channel"
    ax.set_title(
        f"{name}: {out_ch} filters of {in_ch}x{kh}x{kw}{layout}; each scaled to [0, 1] on its own",
        fontsize=9,
    )
    if title:
        fig.suptitle(title)
    return fig


def layer_weights(
    model: nn.Module, input_size: tuple[int, int, int] | None = None
) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, module, flattened weights) of every convolution and linear layer.

    A layer is a module holding parameters of 2 or more dimensions (Conv2d, Linear, and
    layers such as a connection-table convolution whose kernels are a ParameterList); in
    execution order, then any that did not run in registration order.
    """
    groups: dict[str, list[torch.Tensor]] = {}
    for pname, p in model.named_parameters():
        if p.ndim < 2:
            continue  # biases, batch-norm scales
        parts = pname.split(".")
        # "<owner>.weight", or "<owner>.weights.<i>" for a ParameterList of kernels
        owner = parts[:-2] if len(parts) >= 2 and parts[-1].isdigit() else parts[:-1]
        groups.setdefault(".".join(owner), []).append(p.detach().float().cpu().flatten())
    ran = [name for name, _ in execution_order(model, input_size) if name in groups]
    names = ran + [n for n in groups if n not in ran]
    return [(n, model.get_submodule(n), torch.cat(groups[n])) for n in names]


def plot_weight_histograms(
    model: nn.Module,
    title: str = "",
    max_panels: int = MAX_HISTOGRAMS,
    input_size: tuple[int, int, int] | None = None,
) -> Figure:
    """One histogram per convolution/linear layer's weights, in forward order.

    Deep nets: at most `max_panels` panels, of evenly spaced layers (the first and the last
    always among them); the title says how many of how many are shown.
    """
    layers = layer_weights(model, input_size)
    if not layers:
        raise CnnlabError(f"{type(model).__name__} has no convolution or linear weights")
    n = len(layers)
    if n > max_panels:
        keep = sorted({round(i) for i in np.linspace(0, n - 1, max_panels)})
        shown = [layers[i] for i in keep]
        heading = f"weights of {len(shown)} of {n} layers (evenly spaced, first and last included)"
    else:
        shown = layers
        heading = f"weights of all {n} convolution and linear layers"
    ncols = min(4, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, module, w) in zip(axes, shown):
        values = w.numpy()
        ax.hist(values, bins=50, color="tab:blue")
        ax.set_title(f"{name} ({type(module).__name__}, {values.size:,})", fontsize=8)
        ax.text(
            0.98,
            0.95,
            f"mean {values.mean():+.3f}\nstd {values.std():.3f}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
        )
        ax.tick_params(labelsize=7)
    for ax in axes[len(shown) :]:
        ax.remove()  # one axis per histogram
    fig.suptitle(f"{title}: {heading}" if title else heading)
    return fig
