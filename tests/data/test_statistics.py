"""Per-channel statistics of a training split, and the preprocessing made from them."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.statistics import channel_mean_std, meanstd_preprocessing
from cnnlab.errors import DataError


def _dataset(images: torch.Tensor) -> ImageDataset:
    return ImageDataset(images, torch.zeros(len(images), dtype=torch.long), ("a",), "toy-train")


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_mean_and_std_equal_torch_std_mean_of_the_scaled_pixels(chunk: int | None) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 5, 4), generator=g, dtype=torch.uint8)
    images[:, 2] //= 4  # channels of different statistics
    mean, std = channel_mean_std(_dataset(images), chunk=chunk)
    want_std, want_mean = torch.std_mean(images.double() / 255, dim=(0, 2, 3), correction=0)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), want_mean, rtol=0, atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), want_std, rtol=0, atol=1e-12)
    assert mean[2] < mean[0] / 2


def test_the_preprocessing_built_from_them_standardises_the_split() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (20, 3, 6, 6), generator=g, dtype=torch.uint8)
    images[:, 1] = images[:, 1] // 8 + 100
    pre = meanstd_preprocessing(_dataset(images), pad_to=8)
    assert pre.mode == "meanstd" and pre.pad_to == 8 and len(pre.mean) == len(pre.std) == 3
    x = meanstd_preprocessing(_dataset(images))(images)  # float (20, 3, 6, 6)
    std, mean = torch.std_mean(x.double(), dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std, torch.ones(3, dtype=torch.float64), atol=1e-5)


def test_a_constant_channel_or_no_pixels_is_a_data_error() -> None:
    images = torch.randint(0, 256, (4, 2, 3, 3), dtype=torch.uint8)
    images[:, 1] = 7
    with pytest.raises(DataError, match="toy-train: channel 1 has one value in every pixel"):
        meanstd_preprocessing(_dataset(images))
    with pytest.raises(DataError, match="no pixels"):
        channel_mean_std(_dataset(images[:0]))
