"""Per-channel mean and standard deviation of a dataset's pixels, for `meanstd` preprocessing.

The statistics of x / 255 over every pixel of every image of the training split, as the
published CIFAR-10 values (0.4914, 0.4822, 0.4465) and (0.2470, 0.2435, 0.2616) are. Sums and
sums of squares of the uint8 values are accumulated in float64 a chunk of images at a time
(exact: they are integers below 2**53), so the dataset is never converted to float whole. The
standard deviation is the population one: divided by the number of pixels, not one less.
"""

from __future__ import annotations

import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import DataError

CHUNK_ELEMENTS = 1 << 22
"""About this many values (32 MiB in float64) are converted at a time."""


def channel_mean_std(
    dataset: ImageDataset, chunk: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel of the dataset's pixels scaled to [0, 1].

    `chunk` is the number of images converted at a time (default: about 4M values).
    """
    images = dataset.images  # uint8 (N, C, H, W)
    n, c, h, w = images.shape
    if n == 0 or h * w == 0:
        raise DataError(f"{dataset.name or 'dataset'}: no pixels to compute statistics from")
    chunk = chunk or max(1, CHUNK_ELEMENTS // (c * h * w))
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float64)  # (chunk, C, H, W)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = n * h * w
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0.0)
    return tuple((mean / 255.0).tolist()), tuple((var.sqrt() / 255.0).tolist())


def meanstd_preprocessing(dataset: ImageDataset, pad_to: int | None = None) -> Preprocessing:
    """A `meanstd` Preprocessing with the per-channel statistics of `dataset` (the train split)."""
    mean, std = channel_mean_std(dataset)
    if flat := [i for i, s in enumerate(std) if s == 0.0]:
        raise DataError(
            f"{dataset.name or 'dataset'}: channel {flat[0]} has one value in every pixel "
            "(std 0), so it cannot be normalised by its standard deviation"
        )
    return Preprocessing(mode="meanstd", mean=mean, std=std, pad_to=pad_to)
