"""An image classification dataset held in memory as uint8 tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.errors import DataError


@dataclass(frozen=True)
class ImageDataset:
    """Images as a uint8 tensor (N, C, H, W), labels as int64 (N,), class names.

    Conversion to float and normalisation happen per batch in the loader, so
    the dataset stays small (MNIST's 60,000 training images take 47 MB).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"{self.name or 'dataset'}: images must be uint8 (N, C, H, W), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.name or 'dataset'}: {self.images.shape[0]} images but "
                f"{tuple(self.labels.shape)} labels"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def source(self) -> str:
        """The files it came from, without the split: "mnist", "cifar10-jpeg", a folder's name."""
        for split in ("-val", "-train", "-test"):
            if self.name.endswith(split):
                return self.name[: -len(split)]
        return self.name

    def subset(self, index: torch.Tensor | slice, name: str | None = None) -> ImageDataset:
        """The examples at `index` (a slice or an index tensor), sharing no state."""
        return ImageDataset(self.images[index], self.labels[index], self.classes, name or self.name)

    def split(self, n_holdout: int, seed: int) -> tuple[ImageDataset, ImageDataset]:
        """A seeded random split into (rest, holdout) with `n_holdout` examples held out."""
        if not 0 < n_holdout < len(self):
            raise DataError(
                f"validation split of {n_holdout} examples does not fit a dataset of {len(self)}"
            )
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return (
            self.subset(order[n_holdout:].sort().values, self.name),
            self.subset(order[:n_holdout].sort().values, f"{self.name}-val"),
        )
