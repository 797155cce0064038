"""Evaluating a classifier over a loader: loss, top-1 and top-5 error, confusion."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.data.loader import BatchLoader
from cnnlab.training.metrics import ClassificationMeter


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: BatchLoader, num_classes: int, loss_fn: nn.Module | None = None
) -> ClassificationMeter:
    """Run `model` in eval mode over `loader`; restores the model's previous mode."""
    was_training = model.training
    model.eval()
    meter = ClassificationMeter(num_classes, device=loader.device)
    for x, y in loader:
        logits = model(x)
        loss = loss_fn(logits, y) if loss_fn is not None else None
        meter.update(logits, y, loss)
    model.train(was_training)
    return meter
