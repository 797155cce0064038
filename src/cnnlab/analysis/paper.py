"""The papers' published numbers beside the ones computed from our models.

Each family's `VARIANTS` table carries `PaperFigure`s exactly as the paper
prints them; `compare(name)` builds the configuration each figure describes,
measures the quantity, and prints it with the paper's own rounding, so that a
match means "the same number as printed", not "close enough".

Conventions: parameters are trainable parameters (biases included); MACs are
the multiply-adds of convolution and linear layers (the classifier included)
for one image, what the papers call "multiply-adds", "mult-adds" or, in
ResNet's and ShuffleNet's tables, "FLOPs"; pooling, normalisation, activations
and additions are not counted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

import torch
from torch import nn

from cnnlab.analysis.summary import leaf_costs
from cnnlab.layers import ConnectionTableConv2d, EuclideanRBF
from cnnlab.models.variant import QUANTITIES, PaperFigure
from cnnlab.registry import create_model, get_spec

SCALES = {"K": 10**3, "M": 10**6, "G": 10**9}


def _kind(module: nn.Module) -> str:
    if isinstance(module, (nn.Conv2d, ConnectionTableConv2d)):
        if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1):
            return "conv1x1"
        return "conv"
    if isinstance(module, (nn.Linear, EuclideanRBF)):
        return "fc"
    return "other"


def measure(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, float]:
    """Every quantity of QUANTITIES for `model` on one image of `input_shape`."""
    params = {"conv": 0, "conv1x1": 0, "fc": 0, "other": 0}
    macs, weights = dict(params), dict(params)
    fc_bias = connections = 0
    for leaf in leaf_costs(model, input_shape):
        connections += leaf.connections
        kind = _kind(leaf.module)
        params[kind] += leaf.params
        macs[kind] += leaf.macs
        weight = getattr(leaf.module, "weight", None)
        if kind != "other" and isinstance(weight, torch.Tensor) and weight.requires_grad:
            weights[kind] += weight.numel()
        if kind == "fc" and getattr(leaf.module, "bias", None) is not None:
            fc_bias += leaf.module.bias.numel()
    total_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_macs = sum(macs.values())
    conv_params, conv_macs = params["conv"] + params["conv1x1"], macs["conv"] + macs["conv1x1"]
    return {
        "params": total_params,
        "params_no_fc_bias": total_params - fc_bias,
        "macs": total_macs,
        "macs_no_fc": total_macs - macs["fc"],
        "connections": connections,
        "params_conv_share": conv_params / total_params,
        "params_fc_share": params["fc"] / total_params,
        "macs_conv_share": conv_macs / total_macs,
        "macs_fc_share": macs["fc"] / total_macs,
        "params_1x1_share": params["conv1x1"] / total_params,
        "macs_1x1_share": macs["conv1x1"] / total_macs,
        "weights_1x1_share": weights["conv1x1"] / sum(weights.values()),
    }


def render_like(value: float, printed: str, rounding: str = "nearest") -> str:
    """`value` written with the unit, separators and decimals of `printed`."""
    mode = ROUND_DOWN if rounding == "down" else ROUND_HALF_UP
    text = printed.strip()
    suffix = ""
    if text.endswith("%"):
        suffix, value, text = "%", value * 100, text[:-1]
    elif text[-1:] in SCALES:
        suffix, value, text = text[-1], value / SCALES[text[-1]], text[:-1]
    decimals = len(text.split(".")[1]) if "." in text else 0
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=mode)
    body = f"{rounded:,.{decimals}f}" if "," in text else f"{rounded:.{decimals}f}"
    return body + suffix


@dataclass(frozen=True)
class Comparison:
    model: str
    figure: PaperFigure
    computed: float  # unrounded
    rendered: str  # `computed` rounded as the paper rounds

    @property
    def matches(self) -> bool:
        return self.rendered == self.figure.printed.strip()

    @property
    def configuration(self) -> str:
        """Which configuration of the model the figure describes, for the table."""
        parts = [f"{k}={v}" for k, v in self.figure.overrides.items()]
        if self.figure.input_size:
            parts.append("input " + "x".join(map(str, self.figure.input_size)))
        if self.figure.num_classes:
            parts.append(f"{self.figure.num_classes} classes")
        return ", ".join(parts) or "default"


@functools.cache
def measure_variant(
    name: str,
    overrides: tuple[tuple[str, Any], ...] = (),
    input_size: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """`measure` of registered model `name` in one configuration (computed once)."""
    shape = input_size or get_spec(name).input_size
    model = create_model(name, num_classes=num_classes, in_chans=shape[0], **dict(overrides))
    return measure(model, shape)


@functools.cache
def compare(name: str) -> tuple[Comparison, ...]:
    """Every published figure of model `name` beside our number (computed once per name)."""
    results = []
    for figure in get_spec(name).published:
        numbers = measure_variant(
            name, tuple(sorted(figure.overrides.items())), figure.input_size, figure.num_classes
        )
        value = numbers[figure.quantity]
        rendered = render_like(value, figure.printed, figure.rounding)
        results.append(Comparison(name, figure, value, rendered))
    return tuple(results)


def describe(quantity: str) -> str:
    return QUANTITIES[quantity]
