"""Datasets by name, as (train, test) pairs of in-memory ImageDatasets."""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.mnist import load_mnist
from cnnlab.errors import CnnlabError

SOURCES = ("mnist",)
DIGIT_SOURCES = ("mnist",)  # handwritten digits made the MNIST way (for predict)


def load_dataset(
    name: str, data_dir: str | Path | None = None, download: bool = True
) -> tuple[ImageDataset, ImageDataset]:
    """The training and test sets of dataset `name`."""
    if name == "mnist":
        return load_mnist(data_dir, download=download)
    raise CnnlabError(f"unknown dataset {name!r}: expected one of {', '.join(SOURCES)}")
