"""Tensors as the API's JSON: small PNGs as data URLs, vectors as rounded numbers.

A stage's feature maps travel as one PNG mosaic (grey, transparent between tiles),
scaled as in `cnnlab.viz.feature_maps.channel_grid` (each channel to its own range):
for LeNet-5's C1 that is 1 KB instead of 4,704 numbers, and the page scales it up
with crisp pixels. Maps of 1x1 (one value per channel, LeNet-5's C5) are vectors.
JSON has no NaN or infinity: such values become null.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.viz.feature_maps import channel_grid
from cnnlab.viz.overlay import heatmap_overlay

MAX_CHANNELS = 64
"""The most channels of one stage shown (ResNet-50's last stage has 2,048)."""
COLUMNS = 8
"""Tiles per row of a stage's mosaic."""
DECIMALS = 4


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W) grey, (H, W, 2) grey+alpha or (H, W, 3) RGB -> 'data:image/png;base64,...'."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 0..255 (rounded, clipped)."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def image_url(image: torch.Tensor) -> str:
    """Display pixels (C, H, W) in [0, 1], C = 1 or 3 -> a PNG data URL."""
    a = to_uint8(image.detach().float().cpu().numpy())
    return png_data_url(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0).copy())


def overlay_url(image: torch.Tensor, heatmap: torch.Tensor) -> str:
    """`heatmap` (H, W) over display pixels `image` (C, H, W) (viz.overlay), as a PNG."""
    return png_data_url(to_uint8(heatmap_overlay(image, heatmap)))


def numbers(values: torch.Tensor) -> list[float | None]:
    """A tensor's values, flattened, rounded to DECIMALS; NaN and infinities -> None."""
    return [
        round(v, DECIMALS) if math.isfinite(v) else None
        for v in values.detach().float().flatten().tolist()
    ]


def stage_payload(name: str, fmap: torch.Tensor) -> dict[str, Any]:
    """One stage's output (C, H, W): a "vector" of C values for 1x1 maps, else "maps", a
    PNG mosaic of its first MAX_CHANNELS channels, COLUMNS to a row, 1-pixel gaps."""
    c, h, w = fmap.shape
    entry: dict[str, Any] = {"name": name, "shape": [c, h, w]}
    if h * w == 1:
        return {**entry, "kind": "vector", "values": numbers(fmap)}
    shown = min(c, MAX_CHANNELS)
    columns = min(shown, COLUMNS)
    grid = channel_grid(torch.nan_to_num(fmap.float()), shown, columns)  # NaN in the gaps
    gaps = np.isnan(grid)
    grey_alpha = np.stack([to_uint8(np.nan_to_num(grid)), np.where(gaps, 0, 255)], axis=-1)
    return {
        **entry,
        "kind": "maps",
        "shown": shown,
        "columns": columns,
        "rows": math.ceil(shown / columns),
        "image": png_data_url(grey_alpha.astype(np.uint8)),
    }


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON cannot carry them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
