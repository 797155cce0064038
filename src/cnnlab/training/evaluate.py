"""Evaluating a classifier over a loader: loss, top-1 and top-5 error, confusion; optionally
AlexNet's ten-crop testing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from cnnlab.training.metrics import ClassificationMeter


@dataclass(frozen=True)
class TenCrop:
    """Krizhevsky et al. 2012, Section 4.1: "the network makes a prediction by extracting
    five 224x224 patches (the four corner patches and the center patch) as well as their
    horizontal reflections (hence ten patches in all), and averaging the predictions made
    by the network's softmax layer on the ten patches."

    `size` is the crop's (height, width). The preprocessed images are first padded by
    `pad` pixels on every side with the value a pixel of 0 takes after preprocessing (as
    the preprocessing's own padding does), so that a model trained on whole 32x32 images
    can be tested on 32x32 crops of them: with pad 4 the corner crops are the 4-pixel
    shifts of the usual "pad 4, random crop" augmentation. The centre crop starts at
    floor((H - h) / 2), floor((W - w) / 2).
    """

    size: tuple[int, int]
    pad: int = 0

    def __post_init__(self) -> None:
        if min(self.size) < 1 or self.pad < 0:
            raise CnnlabError(
                f"ten-crop size {self.size}, pad {self.pad}: expected a positive size and pad >= 0"
            )


def ten_crops(x: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
    """(N, C, H, W) -> ten (N, C, h, w): the top-left, top-right, bottom-left, bottom-right
    and centre crops, then the same five reflected left to right."""
    (h, w), (height, width) = size, x.shape[-2:]
    if h > height or w > width:
        raise CnnlabError(f"crop {h}x{w}: larger than the {height}x{width} (padded) input")
    top, left = (height - h) // 2, (width - w) // 2
    origins = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w), (top, left)]
    crops = [x[..., i : i + h, j : j + w] for i, j in origins]
    return crops + [c.flip(-1) for c in crops]


def ten_crop_probabilities(
    model: nn.Module, x: torch.Tensor, crop: TenCrop, fill: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """The softmax averaged over the ten crops of `x` padded by `crop.pad` with `fill`
    (a number, or (1, C, 1, 1) per channel): (N, C, H, W) -> (N, classes)."""
    if crop.pad:
        p = crop.pad
        x = F.pad(x - fill, (p, p, p, p)) + fill  # -> (N, C, H + 2p, W + 2p)
    probabilities = [model(c).softmax(dim=1) for c in ten_crops(x, crop.size)]  # 10 x (N, K)
    return torch.stack(probabilities).mean(dim=0)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchLoader,
    num_classes: int,
    loss_fn: nn.Module | None = None,
    ten_crop: TenCrop | None = None,
) -> ClassificationMeter:
    """Run `model` in eval mode over `loader`; restores the model's previous mode.

    With `ten_crop`, the meter sees the log of the averaged softmax as logits: the same
    ranking for top-k, and a cross-entropy of -log of the averaged probability.

    Over a loader of one process's shares (multi-process training) every process calls
    it, and each gets the figures of the whole set, summed over the processes.
    """
    was_training = model.training
    model.eval()
    meter = ClassificationMeter(num_classes, loader.device, loader.dataset.classes)
    if ten_crop is not None:  # the value a pixel of 0 takes after preprocessing, per channel
        black = torch.zeros((1, loader.dataset.image_shape[0], 1, 1), dtype=torch.uint8)
        fill = loader.preprocessing(black.to(loader.device))[:, :, :1, :1]
    for x, y in loader:
        if ten_crop is None:
            logits = model(x)
        else:
            probabilities = ten_crop_probabilities(model, x, ten_crop, fill)
            logits = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
        loss = loss_fn(logits, y) if loss_fn is not None else None
        meter.update(logits, y, loss)
    if loader.world_size > 1:
        meter.all_reduce_()
    model.train(was_training)
    return meter
