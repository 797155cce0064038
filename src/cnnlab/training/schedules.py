"""Learning-rate schedules by name, as a factor of the base rate at each step.

Every schedule is a pure function of the global step, so resuming needs only
the step count (which LambdaLR's state holds).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch

from cnnlab.errors import CnnlabError

SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle", "lenet1998")

# LeCun et al. 1998, Section V-A: eta = 0.0005, 0.0002, 0.0001, 0.00005 for passes
# 1-2, 3-5, 6-8, 9-12, then 0.00001; as factors of the first rate.
LENET1998_PASSES = (2, 5, 8, 12)
LENET1998_FACTORS = (1.0, 0.4, 0.2, 0.1, 0.02)


@dataclass
class ScheduleFactor:
    """factor(step) for schedule `name` over `epochs` epochs of `steps_per_epoch` steps."""

    name: str
    epochs: int
    steps_per_epoch: int
    gamma: float = 0.1  # step and multistep: the factor at each drop
    step_size: int = 30  # step: epochs between drops
    milestones: tuple[int, ...] = ()  # multistep: the epochs at which to drop
    warmup_fraction: float = 0.3  # onecycle: share of the run spent rising

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise CnnlabError(
                f"unknown schedule {self.name!r}: expected one of {', '.join(SCHEDULES)}"
            )
        if self.name == "multistep" and not self.milestones:
            self.milestones = tuple(round(self.epochs * f) for f in (0.5, 0.75))

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch  # 0-based
        total = max(1, self.epochs * self.steps_per_epoch)
        t = min(step / total, 1.0)
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.gamma ** (epoch // self.step_size)
        if self.name == "multistep":
            return self.gamma ** bisect.bisect_right(self.milestones, epoch)
        if self.name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if self.name == "onecycle":
            # linear warm-up from 1/25 of the peak, then cosine down to 1/10^4 of it
            w = self.warmup_fraction
            if t < w:
                return 0.04 + 0.96 * t / w
            return 1e-4 + (1 - 1e-4) * 0.5 * (1.0 + math.cos(math.pi * (t - w) / (1 - w)))
        return LENET1998_FACTORS[bisect.bisect_right(LENET1998_PASSES, epoch)]


def create_schedule(
    optimizer: torch.optim.Optimizer, factor: ScheduleFactor
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler to step once per optimiser step.

    The factor is wrapped in a plain function: LambdaLR saves the attributes of a callable
    object in its state, which would bring a resumed run's old length back with it.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step))
