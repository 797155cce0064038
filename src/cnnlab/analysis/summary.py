"""A per-layer summary: output shape, trainable parameters, connections, multiply-adds.

Connections are counted as LeCun et al. 1998 count them (Section II-B): every
multiply-add plus every bias add, with sparse connection tables respected, so
`lenet5_1998` reproduces the paper's 340,908. Multiply-adds (MACs) count what
convolutions, linear layers and RBF units compute, the same operations that
torch.utils.flop_counter counts (at 2 FLOPs per MAC); pooling, normalisation and
activations add none. Counts are for one example. Receptive fields come from
analysis.receptive_field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from cnnlab.analysis.receptive_field import ReceptiveFieldTracer
from cnnlab.models.classifier import Classifier


@dataclass(frozen=True)
class LayerRow:
    """One row of the summary."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    connections: int
    macs: int
    receptive_field: tuple[int, int] | None  # (h, w) input pixels one unit sees; None: all


@dataclass(frozen=True)
class Summary:
    model: str
    input: tuple[int, int, int]
    layers: list[LayerRow]

    @property
    def total(self) -> dict[str, int]:
        return {
            "params": sum(r.params for r in self.layers),
            "connections": sum(r.connections for r in self.layers),
            "macs": sum(r.macs for r in self.layers),
        }

    def to_dict(self) -> dict:
        layers = [
            dict(
                asdict(r),
                output_shape=list(r.output_shape),
                receptive_field=r.receptive_field and list(r.receptive_field),
            )
            for r in self.layers
        ]
        return {
            "model": self.model,
            "input": list(self.input),
            "layers": layers,
            "total": self.total,
        }


def leaf_cost(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[int, int]:
    """(multiply-adds, connections) of one leaf module for one example."""
    if hasattr(module, "cost"):
        return module.cost(out)
    units = out[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        macs = units * (module.in_channels // module.groups) * kh * kw
        return macs, macs + (units if module.bias is not None else 0)
    if isinstance(module, nn.Linear):
        macs = units * module.in_features
        return macs, macs + (units if module.bias is not None else 0)
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        k = module.kernel_size
        area = k * k if isinstance(k, int) else k[0] * k[1]
        return 0, units * area  # inputs wired to each unit, no multiply-adds
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return 0, inp[0].numel()  # every input feeds exactly one output
    return 0, 0


def _is_leaf(module: nn.Module) -> bool:
    return hasattr(module, "cost") or not any(True for _ in module.children())


def _rows_at_depth(model: nn.Module, depth: int, prefix: str = "") -> list[tuple[str, nn.Module]]:
    rows = []
    for name, child in model.named_children():
        full = f"{prefix}{name}"
        if depth > 1 and not _is_leaf(child):
            rows.extend(_rows_at_depth(child, depth - 1, full + "."))
        else:
            rows.append((full, child))
    return rows


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Sequential):
        return "+".join(type(m).__name__ for m in module if not isinstance(m, nn.Identity))
    return type(module).__name__


@dataclass(frozen=True)
class LeafCost:
    """One leaf module's share of a forward pass of one example."""

    name: str
    module: nn.Module
    params: int  # trainable parameters held by this module itself
    macs: int
    connections: int


Output = tuple[tuple[int, ...], tuple[int, int] | None]  # shape, receptive field


@torch.no_grad()
def _trace(
    model: nn.Module, shape: tuple[int, ...], rows: list[tuple[str, nn.Module]]
) -> tuple[dict[nn.Module, tuple[int, int]], dict[str, Output]]:
    """Run one example through `model`: each leaf's (MACs, connections), each row's
    output shape and receptive field."""
    leaf_costs: dict[nn.Module, tuple[int, int]] = {}
    outputs: dict[str, Output] = {}
    tracer = ReceptiveFieldTracer()
    hooks = []
    for module in model.modules():
        if _is_leaf(module):
            hooks.append(
                module.register_forward_hook(
                    lambda m, i, o: leaf_costs.__setitem__(m, leaf_cost(m, i[0], o))
                )
            )
    for row_name, module in rows:
        hooks.append(
            module.register_forward_hook(
                lambda m, i, o, n=row_name: outputs.__setitem__(
                    n, (tuple(o.shape[1:]), tracer.field(o))
                )
            )
        )
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *shape, device=next(model.parameters()).device)
    try:
        with tracer:
            tracer.start(x)
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return leaf_costs, outputs


def leaf_costs(model: nn.Module, input_shape: tuple[int, ...]) -> list[LeafCost]:
    """Every leaf module that ran, in registration order, with its own costs."""
    costs, _ = _trace(model, tuple(input_shape), [])
    return [
        LeafCost(
            name,
            m,
            sum(p.numel() for p in m.parameters() if p.requires_grad),
            *costs[m],
        )
        for name, m in model.named_modules()
        if m in costs
    ]


def summarize(
    model: Classifier,
    input_shape: tuple[int, int, int] | None = None,
    name: str = "",
    depth: int = 1,
) -> Summary:
    """Run one example of `input_shape` (C, H, W; default the model's) through `model`."""
    shape = tuple(input_shape or model.input_size)
    model.validate_input(shape)
    rows = _rows_at_depth(model, depth)
    costs, outputs = _trace(model, shape, rows)
    layers = []
    for row_name, module in rows:
        leaves = [m for m in module.modules() if m in costs]
        macs = sum(costs[m][0] for m in leaves)
        connections = sum(costs[m][1] for m in leaves)
        params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        out, field = outputs.get(row_name, ((), None))
        layers.append(LayerRow(row_name, _describe(module), out, params, connections, macs, field))
    return Summary(name or type(model).__name__, shape, layers)  # type: ignore[arg-type]
