"""Normalisation layers by name, for the models' `norm` option.

- batch: Ioffe and Szegedy 2015, statistics over (N, H, W) per channel.
- layer: Ba et al. 2016, over (C, H, W) per example (GroupNorm with one group).
- instance: Ulyanov et al. 2016, over (H, W) per example and channel.
- group: Wu and He 2018, over groups of channels per example (32 groups, or
  the largest divisor of the channel count below that).
- none: identity.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import CnnlabError

NORMS = ("batch", "layer", "instance", "group", "none")


def _groups(channels: int, preferred: int = 32) -> int:
    return next(g for g in range(min(preferred, channels), 0, -1) if channels % g == 0)


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer of `kind` for `channels` feature maps."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels)
    if kind == "group":
        return nn.GroupNorm(_groups(channels), channels)
    if kind == "none":
        return nn.Identity()
    raise CnnlabError(f"unknown normalisation {kind!r}: expected one of {', '.join(NORMS)}")
