"""Turning uint8 image batches into the float tensors a model was trained on.

Applied per batch (never stored as float), and saved in every checkpoint so that
`eval` and `predict` prepare inputs exactly as training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError

MODES = ("lenet1998", "meanstd", "unit")


@dataclass(frozen=True)
class Preprocessing:
    """How to map uint8 pixels to model inputs.

    mode:
      "lenet1998": LeCun et al. 1998, Section III-A: background (pixel 0) -> -0.1,
                   foreground (pixel 255) -> 1.175, "which makes the mean input
                   roughly 0 and the variance roughly 1".
      "meanstd":   (x / 255 - mean) / std per channel.
      "unit":      x / 255.
    pad_to: pad symmetrically with background to this square size (MNIST's
            28x28 -> 32x32 for LeNet-5, whose C1 must see the digit's stroke ends).
    """

    mode: str = "meanstd"
    mean: tuple[float, ...] = (0.1307,)
    std: tuple[float, ...] = (0.3081,)
    pad_to: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CnnlabError(f"unknown preprocessing mode {self.mode!r}: expected one of {MODES}")
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise CnnlabError(f"mean {self.mean} and std {self.std}: need equal lengths, std > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            mode=d["mode"],
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            pad_to=d.get("pad_to"),
        )

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size after padding."""
        if self.pad_to is None:
            return height, width
        return max(height, self.pad_to), max(width, self.pad_to)

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (N, C, H, W) on any device -> float (N, C, H', W')."""
        x = images.to(dtype) / 255.0
        if self.mode == "lenet1998":
            x = x * 1.275 - 0.1
            background = -0.1
        elif self.mode == "meanstd":
            channels = x.shape[1]
            mean = torch.tensor(self.mean, dtype=dtype, device=x.device)
            std = torch.tensor(self.std, dtype=dtype, device=x.device)
            if mean.numel() == 1 and channels > 1:
                mean, std = mean.expand(channels), std.expand(channels)
            mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
            x = (x - mean) / std
            background = None  # pad with normalised 0, per channel below
        else:
            background = 0.0
        if self.pad_to is not None and (x.shape[-1] < self.pad_to or x.shape[-2] < self.pad_to):
            ph, pw = max(0, self.pad_to - x.shape[-2]), max(0, self.pad_to - x.shape[-1])
            pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
            if background is None:
                x = F.pad(x + mean / std, pad) - mean / std  # pixel 0 stays pixel 0
            else:
                x = F.pad(x, pad, value=background)
        return x


# Presets the model families' recipes share.
MNIST_32 = Preprocessing(mode="meanstd", mean=(0.1307,), std=(0.3081,), pad_to=32)  # 28 -> 32
CIFAR10 = Preprocessing(
    mode="meanstd", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)
)  # per-channel statistics of the CIFAR-10 training images
IMAGENET = Preprocessing(mode="meanstd", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
