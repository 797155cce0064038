"""LeNet-5: LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied
to document recognition", Proc. IEEE 86(11), 1998, Section II-B and Fig. 2.

Variants (`VARIANTS`):
- `lenet5_1998`, the paper's network: 32x32 input; C1 6@5x5; S2 trainable
  subsampling; C3 16@5x5 wired by Table I; S4; C5 120@5x5; F6 84; every unit
  up to F6 squashed by f(a) = 1.7159 tanh(2a/3); 10 Euclidean RBF output units
  with fixed 7x12 bitmap prototypes; the fan-in initialisation of Appendix A.
  Deliberate deviations: the RBF prototypes are redrawn from Fig. 3, which is a
  picture; the constant j of the loss (eq. 9), which the paper leaves open, is
  1; trained by Adam on batches of 8, with a small weight decay, instead of the
  paper's stochastic diagonal Levenberg-Marquardt on single examples (see the
  recipe's note). The C3
  kernels are computed as a dense convolution with zeros for the absent links.
- `lenet5`, the version of most lecture tables: full C3, average pooling, tanh,
  a linear softmax output (61,706 parameters).
- `lenet5_modern`: the same topology with ReLU, max pooling, batch norm and
  dropout, trained with Adam.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnlab.data.preprocessing import MNIST_32, Preprocessing
from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    LENET5_C3_TABLE,
    ConnectionTableConv2d,
    EuclideanRBF,
    ScaledTanh,
    TrainableSubsampling,
    lecun_1998_init_,
)
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import Recipe


@dataclass(frozen=True)
class LeNetConfig:
    """Choices that tell the LeNet-5 variants apart."""

    c3_table: bool = True  # C3 wired by Table I (else every S2 map feeds every C3 map)
    subsampling: str = "trainable"  # trainable | avg | max
    activation: str = "scaled_tanh"  # scaled_tanh | tanh | relu
    output: str = "rbf"  # rbf (Euclidean RBF units) | linear (softmax logits)
    norm: str = "none"  # none | batch (after each convolution)
    dropout: float = 0.0  # before F6 and before the output
    init: str = "lecun1998"  # lecun1998 (Appendix A) | default (PyTorch's)


_ACTIVATIONS = {"scaled_tanh": ScaledTanh, "tanh": nn.Tanh, "relu": nn.ReLU}
_CHOICES = {
    "subsampling": ("trainable", "avg", "max"),
    "activation": tuple(_ACTIVATIONS),
    "output": ("rbf", "linear"),
    "norm": ("none", "batch"),
    "init": ("lecun1998", "default"),
}


class LeNet5(Classifier):
    """C1 -> S2 -> C3 -> S4 -> C5 -> F6 -> output, for a 32x32 input."""

    stages = ("c1", "s2", "c3", "s4", "c5")
    num_features = 84

    def __init__(self, cfg: LeNetConfig, num_classes: int = 10, in_chans: int = 1) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, 32, 32))
        act = _ACTIVATIONS[cfg.activation]
        self.c1 = self._conv_block(nn.Conv2d(in_chans, 6, 5), 6, act)
        self.s2 = self._subsampling(6, act)
        c3 = ConnectionTableConv2d(6, LENET5_C3_TABLE, 5) if cfg.c3_table else nn.Conv2d(6, 16, 5)
        self.c3 = self._conv_block(c3, 16, act)
        self.s4 = self._subsampling(16, act)
        self.c5 = self._conv_block(nn.Conv2d(16, 120, 5), 120, act)
        self.f6 = nn.Sequential(self._dropout(), nn.Linear(120, 84), act())
        self.output = self._classifier(num_classes)
        if cfg.init == "lecun1998":
            lecun_1998_init_(self)

    def _conv_block(self, conv: nn.Module, channels: int, act: type[nn.Module]) -> nn.Sequential:
        norm = [nn.BatchNorm2d(channels)] if self.cfg.norm == "batch" else []
        return nn.Sequential(conv, *norm, act())

    def _dropout(self) -> nn.Module:
        return nn.Dropout(self.cfg.dropout) if self.cfg.dropout > 0 else nn.Identity()

    def _subsampling(self, channels: int, act: type[nn.Module]) -> nn.Module:
        if self.cfg.subsampling == "trainable":
            return nn.Sequential(TrainableSubsampling(channels), act())
        pool = nn.AvgPool2d if self.cfg.subsampling == "avg" else nn.MaxPool2d
        return pool(2)

    def _classifier(self, num_classes: int) -> nn.Module:
        if self.cfg.output == "rbf":
            return EuclideanRBF(84, num_classes)
        return nn.Sequential(self._dropout(), nn.Linear(84, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s2(self.c1(x))  # (N, C, 32, 32) -> (N, 6, 28, 28) -> (N, 6, 14, 14)
        x = self.s4(self.c3(x))  # -> (N, 16, 10, 10) -> (N, 16, 5, 5)
        x = self.c5(x).flatten(1)  # -> (N, 120, 1, 1) -> (N, 120)
        return self.f6(x)  # -> (N, 84)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = self._classifier(num_classes)


def _check_config(cfg: LeNetConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(f"{name}={getattr(cfg, name)!r}: expected one of {allowed}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout}: expected a probability in [0, 1)")


LENET_1998_INPUT = Preprocessing(mode="lenet1998", mean=(0.0,), std=(1.0,), pad_to=32)

VARIANTS: dict[str, Variant] = {
    "lenet5_1998": Variant(
        LeNetConfig(),
        Recipe(
            preprocessing=LENET_1998_INPUT,
            optimizer="adam",
            lr=2e-3,
            momentum=0.9,
            weight_decay=2e-4,
            schedule="lenet1998",
            epochs=20,
            batch_size=8,
            loss="rbf_map",
            note=(
                "The paper trains 20 passes of single examples with stochastic diagonal "
                "Levenberg-Marquardt (a per-parameter step size from a Hessian-diagonal "
                "estimate), global rate 0.0005, 0.0002, 0.0001, 0.00005 and 0.00001 over "
                "passes 1-2, 3-5, 6-8, 9-12 and 13-20. Here: Adam (a per-parameter step size "
                "from gradient statistics, first-order) on batches of 8, base rate 0.002, "
                "with the paper's per-pass decay (factors 1, 0.4, 0.2, 0.1, 0.02), and an L2 "
                "weight decay of 0.0002 that the paper does not use."
            ),
        ),
        "LeNet-5 as in LeCun et al. 1998: C3 table, trainable subsampling, RBF output",
        published=(
            PaperFigure("params", "60,000", "Section II-B"),
            PaperFigure("connections", "340,908", "Section II-B"),
        ),
    ),
    "lenet5": Variant(
        LeNetConfig(
            c3_table=False, subsampling="avg", activation="tanh", output="linear", init="default"
        ),
        Recipe(
            preprocessing=MNIST_32,
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            schedule="cosine",
            epochs=10,
            batch_size=64,
            channels_last=True,  # 1.06x training, 1.55x inference: speed_options.md
        ),
        "LeNet-5 of the lecture tables: full C3, average pooling, tanh, softmax",
    ),
    "lenet5_modern": Variant(
        LeNetConfig(
            c3_table=False,
            subsampling="max",
            activation="relu",
            output="linear",
            norm="batch",
            dropout=0.1,
            init="default",
        ),
        Recipe(
            preprocessing=MNIST_32,
            optimizer="adam",
            lr=2e-3,
            momentum=0.9,
            weight_decay=0.0,
            schedule="onecycle",
            epochs=15,
            batch_size=128,
        ),
        "LeNet-5 with ReLU, max pooling, batch norm and dropout",
    ),
}


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> LeNet5:
    """Build variant `name`; `overrides` replace fields of its LeNetConfig."""
    cfg = replace(VARIANTS[name].config, **overrides)
    return LeNet5(cfg, num_classes=num_classes, in_chans=in_chans)
