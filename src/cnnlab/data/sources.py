"""Datasets by name or path, as (train, test) pairs of in-memory ImageDatasets.

"mnist" (mnist.py), "cifar10" (cifar10.py: the python batches, else the JPEG copy), or the
path of a folder or .zip of class sub-folders (image_folder.py).
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.cifar10 import load_cifar10
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.image_folder import load_image_folder
from cnnlab.data.mnist import load_mnist
from cnnlab.errors import CnnlabError

SOURCES = ("mnist", "cifar10")
DIGIT_SOURCES = ("mnist",)  # handwritten digits made the MNIST way (for predict)
DATA_HELP = f"dataset: {', '.join(SOURCES)}, or a folder or .zip of class sub-folders"
SOURCE_NOTES = {
    "cifar10-jpeg": "the JPEG re-encoded copy of CIFAR-10, so its numbers are cifar10-jpeg "
    "numbers, not comparable digit for digit with the canonical set's",
}


def describe_source(source: str) -> str:
    """`source` (an ImageDataset.source), with what a reader must know about those files."""
    note = SOURCE_NOTES.get(source)
    return f"{source} ({note})" if note else source


def load_dataset(
    name: str, data_dir: str | Path | None = None, download: bool = True
) -> tuple[ImageDataset, ImageDataset]:
    """The training and test sets of dataset `name`, or of the image folder or zip at `name`."""
    if name == "mnist":
        return load_mnist(data_dir, download=download)
    if name == "cifar10":
        return load_cifar10(data_dir, download=download)
    path = Path(name).expanduser()
    if path.exists():
        return load_image_folder(path)
    raise CnnlabError(
        f"unknown dataset {name!r}: expected one of {', '.join(SOURCES)}, "
        "or the path of a folder or .zip of class sub-folders"
    )
