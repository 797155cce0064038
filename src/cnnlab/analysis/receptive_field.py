"""Receptive fields: the extent of input pixels each unit of a feature map can see.

Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019: through a layer of kernel k, stride s and dilation d,

    r_out = r_in + (k - 1) * d * j_in        j_out = j_in * s

where j is the distance, in input pixels, between neighbouring units. Where
paths merge (a residual addition, an Inception concatenation) the largest
field wins. The trace follows the tensors of one forward pass through every
convolution and pooling call, whichever module makes it, so branching networks
need no description of their wiring. Fields are theoretical: they may exceed
the image. Units after a global pooling or a fully connected layer see the
whole image, reported as None.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

# (rf_h, rf_w, jump_h, jump_w)
Geometry = tuple[int, int, int, int]

_CONV = {"conv2d"}
_POOL = {"max_pool2d", "_max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"}
_GLOBAL = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_max_pool2d", "linear"}


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


class ReceptiveFieldTracer(TorchFunctionMode):
    """Within `with tracer:`, follows the geometry of every tensor derived from `start`."""

    def __init__(self) -> None:
        super().__init__()
        self._geometry: dict[int, Geometry | None] = {}
        self._alive: list[torch.Tensor] = []  # keeps ids unique during the trace

    def start(self, x: torch.Tensor) -> None:
        self._remember(x, (1, 1, 1, 1))

    def field(self, t: torch.Tensor) -> tuple[int, int] | None:
        """(height, width) seen by one unit of `t`; None if it sees the whole image
        or `t` does not derive from the input."""
        g = self._geometry.get(id(t))
        return None if g is None else (g[0], g[1])

    def _remember(self, t: torch.Tensor, g: Geometry | None) -> None:
        self._geometry[id(t)] = g
        self._alive.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tracked = [
            t
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and id(t) in self._geometry
        ]
        if not tracked:
            return out
        known = [self._geometry[id(t)] for t in tracked]
        if any(g is None for g in known):
            g = None
        else:
            g = tuple(max(values) for values in zip(*known))  # type: ignore[assignment]
            g = self._through(getattr(func, "__name__", ""), args, kwargs, g)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._remember(t, g)
        return out

    @staticmethod
    def _through(name: str, args: tuple, kwargs: dict, g: Geometry) -> Geometry | None:
        rf_h, rf_w, j_h, j_w = g
        if name in _GLOBAL:
            return None
        if name in _CONV:
            kernel = (
                tuple(args[1].shape[-2:]) if len(args) > 1 else tuple(kwargs["weight"].shape[-2:])
            )
            stride = _pair(_arg(args, kwargs, 3, "stride", 1))
            dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
        elif name in _POOL:
            kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
            stride = _pair(_arg(args, kwargs, 2, "stride", None) or kernel)
            dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else (1, 1)
        else:
            return g
        return (
            rf_h + (kernel[0] - 1) * dilation[0] * j_h,
            rf_w + (kernel[1] - 1) * dilation[1] * j_w,
            j_h * stride[0],
            j_w * stride[1],
        )


@torch.no_grad()
def receptive_field(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The receptive field of one unit of `module`'s output for an input of `input_shape`."""
    x = torch.zeros(1, *input_shape)
    tracer = ReceptiveFieldTracer()
    with tracer:
        tracer.start(x)
        out = module(x)
    return tracer.field(out)


def describe_field(field: tuple[int, int] | None) -> str:
    if field is None:
        return "all"
    h, w = field
    return f"{h}x{w}" if h != w else f"{h}"
