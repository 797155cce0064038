"""What a family declares about each of its named variants (its `VARIANTS` table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnlab.recipe import Recipe

QUANTITIES = {
    "params": "trainable parameters",
    "params_no_fc_bias": "parameters, biases of fully connected layers not counted",
    "macs": "multiply-adds of convolution and linear layers for one image",
    "macs_no_fc": "multiply-adds of the convolution layers only (fully connected ones not counted)",
    "connections": "connections as LeCun et al. 1998 count them (multiply-adds + bias adds)",
    "params_conv_share": "share of parameters in convolution layers",
    "params_fc_share": "share of parameters in fully connected layers",
    "macs_conv_share": "share of multiply-adds in convolution layers",
    "macs_fc_share": "share of multiply-adds in fully connected layers",
    "params_1x1_share": "share of parameters in 1x1 convolutions",
    "macs_1x1_share": "share of multiply-adds in 1x1 convolutions",
    "weights_1x1_share": (
        "share of 1x1-convolution weights among all convolution and fully connected weights "
        "(biases and normalisation parameters not counted)"
    ),
}


@dataclass(frozen=True)
class PaperFigure:
    """A number a paper publishes about a model, exactly as printed there.

    `printed` carries the paper's rounding: "60,965,224" (exact), "724.4M",
    "1.8G", "0.27M", "94.86%". `rounding` is "nearest", or "down" where the
    paper's figures are consistent only with truncation. `overrides`,
    `input_size` and `num_classes` say which configuration the figure is for
    (default: the variant's own).
    """

    quantity: str  # a key of QUANTITIES
    printed: str
    source: str  # "Table 2", "Section 3.5", ...
    overrides: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int, int] | None = None
    num_classes: int | None = None
    rounding: str = "nearest"
    note: str = ""  # the convention, where it differs from QUANTITIES' wording

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {self.quantity!r}")
        if self.rounding not in ("nearest", "down"):
            raise ValueError(f"unknown rounding {self.rounding!r}")


@dataclass(frozen=True)
class Variant:
    """One registered name: its config, default recipe and the paper's numbers for it."""

    config: Any  # the family's frozen config dataclass
    recipe: Recipe
    description: str  # one line, shown by `cnnlab models`
    num_classes: int = 10
    input_size: tuple[int, int, int] = (1, 32, 32)  # (C, H, W) the paper used
    published: tuple[PaperFigure, ...] = ()
