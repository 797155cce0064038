"""Zoph and Le, "Neural Architecture Search with Reinforcement Learning", ICLR 2017.

A plain convolutional network assembled from its config, the search space of
`cnnlab experiment nas`: stages of convolutions, each stage ending by halving the
feature maps, then a head and fully connected layers. Zoph and Le's controller chose
each layer's filter height, width and count; here each stage's width and kernel size,
the convolutions per stage, the downsampling, the normalisation and the head are the
choices, which span the layouts of LeNet-5 (LeCun et al. 1998: convolution and
subsampling stages, then fully connected layers) and VGG (Simonyan and Zisserman 2015:
stacked small convolutions between pools). Any architecture a search finds trains with
`cnnlab train convnet --model-arg widths=[16,32] --model-arg kernels=[5,3] ...` (values
are JSON).

Variants:
- `convnet`: for 32x32 inputs (MNIST padded to 32, CIFAR-10), grey or colour: three
  stages of one 3x3 convolution (same padding) with 32, 64 and 128 maps, each followed
  by batch norm, ReLU and a 2x2 max pool (32 -> 16 -> 8 -> 4), global average pooling
  and a linear classifier; lenet5_modern's recipe.
- `convnet_speedrun`: the plain layout of the public CIFAR-10 speed runs (Page 2018, "How
  to train your ResNet"; Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
  arXiv:2404.00498) for 32x32 colour images: three stages of two 3x3 convolutions with
  64, 256 and 256 maps, the maps halved by a max pool right after each stage's first
  convolution, batch norm and GELU after every convolution, a global max pool and a
  linear classifier. Not those runs' whitening stem, identity initialisation, output
  scaling or test-time flips; what it reaches on this machine is in docs/speed.md.

Deviations from the paper:
- Zoph and Le's controller chooses, layer by layer, the filter height and width (1, 3,
  5 or 7) and the number of filters (24, 36, 48 or 64), in further experiments also
  strides and skip connections between any layers. Here a stage repeats one square
  kernel, each stage ends with a pool or a strided convolution (Springenberg et al.
  2015), and there are no skip connections: the LeNet/VGG family the lectures
  compare searched networks with, not the paper's space.
- With `widths=[6,16], kernels=[5,5], padding="valid", downsample="avg", norm="none",
  activation="tanh", head="flatten", hidden=[120,84]` the network is `lenet5` (the
  same 61,706 parameters and 416,520 multiply-adds; C5, a 5x5 convolution over 5x5
  maps, is the first fully connected layer here).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnlab.data.preprocessing import CIFAR10
from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ACTIVATIONS,
    INIT_SCHEMES,
    NORMS,
    activation_class,
    conv_output_size,
    init_weights_,
    make_norm,
)
from cnnlab.models import lenet
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import Variant
from cnnlab.recipe import SHORT_RECIPE_32


@dataclass(frozen=True)
class ConvNetConfig:
    """The architecture: one entry of `widths` and `kernels` per stage."""

    widths: tuple[int, ...] = (32, 64, 128)  # output maps of each stage's convolutions
    kernels: tuple[int, ...] = (3, 3, 3)  # each stage's kernel size (odd, square)
    convs: int = 1  # convolutions per stage (LeNet-5: 1; VGG: 1 to 4)
    padding: str = "same"  # same (pad k // 2: the size is kept) | valid (none, as LeNet-5)
    downsample: str = "max"  # each stage halves the maps by: max | avg (2x2 pool) | stride
    # (stride: its last convolution has stride 2 instead of a pool after it)
    # where in a stage the maps halve: after its last convolution (end: LeNet-5, VGG) or its
    # first (first: the CIFAR-10 speed runs', whose later convolutions run at the halved size)
    halve_at: str = "end"
    norm: str = "batch"  # after every convolution, before its activation: a make_norm kind
    activation: str = "relu"  # after every convolution and hidden fully connected layer
    head: str = "avg"  # the last maps to features: avg | max (global pooling) | flatten
    hidden: tuple[int, ...] = ()  # widths of hidden fully connected layers (LeNet-5: 120, 84)
    dropout: float = 0.0  # before each fully connected layer, the classifier's included
    init: str = "default"  # a scheme of cnnlab.layers.init (default: PyTorch's)


_CHOICES = {
    "padding": ("same", "valid"),
    "downsample": ("max", "avg", "stride"),
    "halve_at": ("end", "first"),
    "norm": NORMS,
    "activation": tuple(ACTIVATIONS),
    "head": ("avg", "max", "flatten"),
    "init": INIT_SCHEMES,
}


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_config(cfg: ConvNetConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(
                f"{name}={getattr(cfg, name)!r}: expected one of {', '.join(allowed)}"
            )
    for name, example in (("widths", "[32, 64]"), ("kernels", "[5, 3]")):
        values = getattr(cfg, name)
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise CnnlabError(f"{name}={values!r}: expected a list, one per stage, like {example}")
        if not all(_is_count(v) for v in values):
            raise CnnlabError(f"{name}={list(values)!r}: expected positive integers")
    if len(cfg.kernels) != len(cfg.widths):
        raise CnnlabError(
            f"kernels={list(cfg.kernels)} for widths={list(cfg.widths)}: expected one kernel "
            "size per stage"
        )
    if any(k % 2 == 0 for k in cfg.kernels):
        raise CnnlabError(f"kernels={list(cfg.kernels)}: expected odd sizes (1, 3, 5, 7, ...)")
    hidden = cfg.hidden
    if not isinstance(hidden, Sequence) or isinstance(hidden, str):
        raise CnnlabError(f"hidden={hidden!r}: expected a list of widths, like [120, 84] or []")
    if not all(_is_count(v) for v in hidden):
        raise CnnlabError(f"hidden={list(hidden)!r}: expected positive integers")
    if not _is_count(cfg.convs):
        raise CnnlabError(f"convs={cfg.convs!r}: expected a positive integer")
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout}: expected a probability in [0, 1)")


def halving_conv(cfg: ConvNetConfig) -> int:
    """The convolution of each stage (1-based) after which, or by whose stride, the maps halve."""
    return 1 if cfg.halve_at == "first" else cfg.convs


def stage_sizes(cfg: ConvNetConfig, size: int) -> list[int]:
    """The length of the maps after each stage along one side of the input, `size` long."""
    sizes = []
    halving = halving_conv(cfg)
    for i, kernel in enumerate(cfg.kernels, start=1):
        padding = kernel // 2 if cfg.padding == "same" else 0
        try:
            for j in range(1, cfg.convs + 1):
                strided = cfg.downsample == "stride" and j == halving
                size = conv_output_size(size, kernel, 2 if strided else 1, padding)
                if cfg.downsample != "stride" and j == halving:
                    size = conv_output_size(size, 2, 2)
        except CnnlabError:
            raise CnnlabError(
                f"widths={list(cfg.widths)}, kernels={list(cfg.kernels)}, convs={cfg.convs}, "
                f"padding={cfg.padding}: stage {i} gets maps too small for it; expected fewer "
                "stages, smaller kernels or padding same"
            ) from None
        sizes.append(size)
    return sizes


class ConvNet(Classifier):
    """stage1 ... stageN (convolutions, then halving) -> head -> hidden FC -> output."""

    def __init__(
        self,
        cfg: ConvNetConfig,
        num_classes: int = 10,
        in_chans: int = 1,
        image_size: tuple[int, int] = (32, 32),
    ) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, *image_size))
        self.fixed_input_size = cfg.head == "flatten"
        h, w = (stage_sizes(cfg, side)[-1] for side in image_size)
        channels = in_chans
        for i, (width, kernel) in enumerate(zip(cfg.widths, cfg.kernels, strict=True), start=1):
            self.add_module(f"stage{i}", self._stage(channels, width, kernel))
            channels = width
        self.stages = tuple(f"stage{i}" for i in range(1, len(cfg.widths) + 1))
        if cfg.head in ("avg", "max"):
            self.pool = (nn.AdaptiveAvgPool2d if cfg.head == "avg" else nn.AdaptiveMaxPool2d)(1)
            features = channels
        else:
            self.pool = nn.Identity()
            features = channels * h * w
        layers: list[nn.Module] = []
        for width in cfg.hidden:
            layers += [
                *self._dropout(),
                nn.Linear(features, width),
                activation_class(cfg.activation)(),
            ]
            features = width
        self.fc = nn.Sequential(*layers) if layers else nn.Identity()
        self.num_features = features
        self.output = self._classifier(num_classes)
        init_weights_(self, cfg.init)

    def _stage(self, cin: int, cout: int, kernel: int) -> nn.Sequential:
        """`convs` x (conv -> norm -> activation), halving the maps by a 2x2 pool after the
        stage (halve_at end) or right after its first conv (halve_at first), or by a stride."""
        cfg = self.cfg
        padding = kernel // 2 if cfg.padding == "same" else 0
        halving = halving_conv(cfg)
        pooled = cfg.downsample != "stride"
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for j in range(1, cfg.convs + 1):
            stride = 2 if not pooled and j == halving else 1
            conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=cfg.norm == "none")
            unit: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
            if pooled and j == halving and cfg.halve_at == "first":
                unit["pool"] = self._pool()
            unit["norm"] = make_norm(cfg.norm, cout)
            unit["act"] = activation_class(cfg.activation)()
            layers[f"conv{j}"] = nn.Sequential(unit)
            cin = cout
        if pooled and cfg.halve_at == "end":
            layers["pool"] = self._pool()
        return nn.Sequential(layers)

    def _pool(self) -> nn.Module:
        return (nn.MaxPool2d if self.cfg.downsample == "max" else nn.AvgPool2d)(2)

    def _dropout(self) -> list[nn.Module]:
        return [nn.Dropout(self.cfg.dropout)] if self.cfg.dropout > 0 else []

    def _classifier(self, num_classes: int) -> nn.Sequential:
        return nn.Sequential(*self._dropout(), nn.Linear(self.num_features, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, 32, 32) -> stage i: (N, widths[i - 1], 32 / 2^i, 32 / 2^i) with same padding
        for name in self.stages:
            x = getattr(self, name)(x)
        x = self.pool(x).flatten(1)  # -> (N, widths[-1]) (avg, max) or (N, widths[-1] * h * w)
        return self.fc(x)  # -> (N, hidden[-1]), or unchanged without hidden layers

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = self._classifier(num_classes)
        init_weights_(self.output, self.cfg.init)


RECIPE = replace(
    lenet.VARIANTS["lenet5_modern"].recipe,
    note="Not from a paper: lenet5_modern's recipe, so that a searched net and "
    "lenet5_modern differ in their architecture only.",
)

SPEEDRUN_RECIPE = replace(
    SHORT_RECIPE_32,  # its rate: 0.2 (resnet20's budget rate) trained slower over 4 epochs
    preprocessing=CIFAR10,
    epochs=30,
    batch_size=256,
    augment=("crop:4", "flip"),
    augment_for=("cifar10",),
    note="Not from a paper: the zoo's short recipe on CIFAR-10 with crops and flips; "
    "benchmarks/cifar10_budget.py sizes its epochs to a wall-clock budget.",
)

VARIANTS: dict[str, Variant] = {
    "convnet": Variant(
        ConvNetConfig(),
        RECIPE,
        "configurable plain CNN (NAS search space): 3 stages of 3x3 conv 32-64-128, BN, max pool",
        num_classes=10,
        input_size=(1, 32, 32),
    ),
    "convnet_speedrun": Variant(
        ConvNetConfig(
            widths=(64, 256, 256),
            convs=2,
            halve_at="first",
            activation="gelu",
            head="max",
        ),
        SPEEDRUN_RECIPE,
        "the CIFAR-10 speed runs' plain net: 2x(3x3 conv) per stage, 64-256-256, pool after "
        "the first, BN, GELU, global max pool",
        num_classes=10,
        input_size=(3, 32, 32),
    ),
}


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> ConvNet:
    """Build variant `name`; `overrides` replace fields of its ConvNetConfig (JSON lists
    become tuples)."""
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    cfg = replace(VARIANTS[name].config, **overrides)
    _, h, w = VARIANTS[name].input_size
    return ConvNet(cfg, num_classes=num_classes, in_chans=in_chans, image_size=(h, w))
