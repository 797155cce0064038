"""The interface every cnnlab model has (after timm's, without its indirection).

- `forward(x)` returns logits, in training and evaluation alike.
- `forward_features(x)` returns what the classifier reads, `forward_head(f)` the logits.
- `num_features` is the width of that representation; `reset_classifier(n)`
  replaces the classifier for `n` classes (transfer learning).
- `forward_with_aux(x)` returns (logits, auxiliary logits) for training; only
  GoogLeNet has auxiliary classifiers, weighted by `aux_weight` in the loss.
- `stages` names, in forward order, the submodules whose outputs are the (N, C, H, W)
  network's feature maps (for feature-map plots, Grad-CAM, the summary).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError


class Classifier(nn.Module, metaclass=ABCMeta):
    """Base class: subclasses build their layers and set the attributes below."""

    stages: tuple[str, ...] = ()
    num_features: int = 0
    num_classes: int = 0
    in_chans: int = 1
    input_size: tuple[int, int, int] = (1, 32, 32)  # the (C, H, W) the paper used
    fixed_input_size: bool = True  # False where global pooling accepts larger inputs
    aux_weight: float = 0.0  # loss weight of each auxiliary classifier

    def __init__(self, cfg: Any, num_classes: int, input_size: tuple[int, int, int]) -> None:
        """`cfg`: the family's config; `input_size`: the (C, H, W) the model is built for."""
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.in_chans = input_size[0]
        self.input_size = input_size

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input batch -> the representation the classifier reads."""

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and the auxiliary classifiers' logits (none unless overridden)."""
        return self(x), []

    def get_classifier(self) -> nn.Module:
        return self.output

    @abstractmethod
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for `num_classes` classes."""

    def validate_input(self, shape: tuple[int, ...]) -> None:
        """Raise a one-line error unless one example of `shape` (C, H, W) fits the model."""
        c, h, w = self.input_size
        if len(shape) != 3:
            raise CnnlabError(f"input shape {tuple(shape)}: expected (C, H, W) like {(c, h, w)}")
        if shape[0] != self.in_chans:
            raise CnnlabError(
                f"input has {shape[0]} channel(s) but the model expects {self.in_chans}"
            )
        if self.fixed_input_size and tuple(shape[1:]) != (h, w):
            raise CnnlabError(
                f"input size {shape[1]}x{shape[2]} does not fit: this model expects {h}x{w}"
            )
