"""Non-finite numbers in training: found at the step they appear, in every process at once.

A NaN or infinite loss is checked before backward (one device sync per step); under
torchrun the processes sum their counts of non-finite values, so that all of them stop,
or skip the batch, together. Weights are checked before every save, so that a checkpoint
is never written with NaN in it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cnnlab.training.distributed import World, all_reduce_sum_


def all_finite(value: torch.Tensor, world: World) -> bool:
    """Whether `value` is finite everywhere, in every process (a collective under torchrun)."""
    bad = (~torch.isfinite(value.detach())).sum()
    if world.distributed:
        all_reduce_sum_(bad)
    return int(bad.item()) == 0


def finite_parameters(parameters: Iterable[torch.Tensor]) -> bool:
    """Whether every parameter is finite (a single device sync)."""
    flags = [torch.isfinite(p.detach()).all() for p in parameters]
    return bool(torch.stack(flags).all()) if flags else True
