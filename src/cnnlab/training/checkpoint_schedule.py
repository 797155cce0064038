"""When a run saves its training state between the ends of epochs: every N optimiser steps
(counted over the whole run, so the same steps after a resume) and/or every M minutes
since the last save. Saving never changes what the run computes, so either can be set
or changed on resume without changing the model it ends with."""

from __future__ import annotations

import time
from collections.abc import Callable


class CheckpointSchedule:
    """`due(step)` after each optimiser step; `saved()` after every save."""

    def __init__(
        self,
        every_steps: int | None = None,
        every_minutes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_steps = every_steps
        self.every_seconds = None if every_minutes is None else 60.0 * every_minutes
        self.clock = clock
        self._last = clock()

    def due(self, step: int) -> bool:
        """Whether to save after global step `step` (1-based: the steps done so far)."""
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        return self.every_seconds is not None and self.clock() - self._last >= self.every_seconds

    def saved(self) -> None:
        """Count the minutes from now."""
        self._last = self.clock()
