"""Optimisers by name: SGD (momentum, Nesterov, weight decay), Adam, AdamW."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cnnlab.errors import CnnlabError

OPTIMIZERS = ("sgd", "adam", "adamw")


def create_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """`momentum` is SGD's momentum and Adam's beta1."""
    if lr <= 0:
        raise CnnlabError(f"learning rate {lr}: expected a positive number")
    if name == "sgd":
        if nesterov and momentum <= 0:
            raise CnnlabError("Nesterov momentum needs --momentum > 0")
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise CnnlabError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
