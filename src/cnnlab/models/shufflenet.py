"""ShuffleNet: Zhang, Zhou, Lin and Sun, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018 (arXiv 1707.01083).

Variants:
- `shufflenet_v1_g1`, `shufflenet_v1_g2`, `shufflenet_v1_g3`, `shufflenet_v1_g4`,
  `shufflenet_v1_g8`: "ShuffleNet 1x" of Table 1 with g = 1, 2, 3, 4 or 8 groups in its
  1x1 convolutions, for 3x224x224 images and 1000 classes. `width_mult` s gives
  "ShuffleNet s x" (the paper uses 0.25, 0.5, 1, 1.5 and 2).
- `shufflenet_v1_g3_small`: g = 3, 1x, for 3x32x32 images and 10 classes: conv1 has
  stride 1 and the max pool is left out, so stages 2, 3 and 4 work on 16x16, 8x8 and
  4x4 maps (instead of 28, 14 and 7) and the global pool averages 4x4; nothing else
  changes (about 43 M multiply-adds per image).

The network (Table 1): conv1 3x3/2 with 24 filters + BN + ReLU, a 3x3/2 max pool, stages
2, 3 and 4 of 4, 8 and 4 ShuffleNet units (the first of each with stride 2), a global
average pool and a fully connected classifier. Output channels of stages 2/3/4: g=1
144/288/576, g=2 200/400/800, g=3 240/480/960, g=4 272/544/1088, g=8 384/768/1536. A unit
(Fig. 2 b, c): 1x1 group convolution to the bottleneck (1/4 of the unit's output
channels) + BN + ReLU, channel shuffle, 3x3 depthwise convolution (stride 1 or 2) + BN
(no ReLU), 1x1 group convolution + BN; with stride 1 the input is added and a ReLU
follows; with stride 2 the shortcut is a 3x3/2 average pool, concatenated (shortcut
first) with the residual branch, which therefore outputs out - in channels, then a ReLU.
The first 1x1 convolution of stage 2 is not grouped (Section 3.3), and no shuffle
follows it (after a dense convolution a shuffle only relabels channels). Option
`shuffle=False` removes every shuffle (Table 3's "no shuffle" networks).

Width (`width_mult` s, Section 3.3: "ShuffleNet s x" scales the number of filters by s):
each stage's output channels are s times Table 1's, rounded to the nearest multiple of g;
each bottleneck is 1/4 of its unit's output, rounded to the nearest multiple of g; conv1
has 24 s filters rounded to the nearest multiple of g (halves round up everywhere; at
least g each). Multiples of g keep every grouped convolution and every stride-2 branch
(out - in channels) divisible. For s = 0.25, 0.5, 1.5 and 2 the stage widths are exactly
s times Table 1's; only bottlenecks of g=2 and g=4 get rounded (0.25x, 0.5x, 1.5x; e.g.
25 -> 26, 17 -> 16, 34 -> 36); conv1 gets 6, 12, 24, 36, 48 filters at 0.25x, 0.5x, 1x,
1.5x, 2x (8 for g=4 and g=8 at 0.25x, 16 for g=8 at 0.5x, 40 for g=8 at 1.5x). This
agrees with the authors' released 0.5x, 1x and 2x models (g=3 and g=8); their 1.5x
models keep 24 filters in conv1, which option `stem_channels` sets.

Published complexities ("Complexity", "FLOPs": the paper counts multiply-adds). Table 1's
five 1x figures leave out the fully connected classifier: all five match only without
its c4 x 1000 multiply-adds (with them, g = 2, 4 and 8 would print 141M, 134M and 138M);
they are checked with a one-class classifier (c4 multiply-adds, under 0.002 M). The
g=3 figures for other widths (Table 8: 0.5x 38M, 2x 524M; Table 5: 1.5x 292) match with
the classifier counted. Table 2 prints one complexity per row for all five g (140, 38,
13 MFLOPs), a nominal budget: its 1x row says 140 where Table 1 gives 133-143, and ours
(classifier counted) are 38.5, 38.6, 37.6, 37.5, 40.5 M at 0.5x and 11.0-12.4 M at 0.25x
for g = 1, 2, 3, 4, 8, so of Table 2 only 0.5x g=3 (Table 8's 38M) is attached.

Deviations from the paper:
- The paper gives no rule for widths that s times Table 1 does not divide, nor says
  whether conv1 is scaled; the rule above is ours (conv1 scaled as the authors' released
  0.5x and 2x models scale it).
- The initialisation, which the paper does not state: convolutions He-normal,
  N(0, 2/fan_in) with fan_in = (in/groups) x k x k (option `init`; fan-out schemes
  count a depthwise filter's fan-out as channels x 9, start its weights tiny, and
  then its BN running variance lags far behind training); the classifier
  N(0, 0.01^2) with zero biases, as in the authors' released code (PyTorch's own
  initialisation everywhere with init="default"); BN scale 1 and shift 0.
- Training recipe: the paper's linear decay of the learning rate from 0.5 to 0 is a
  cosine decay here, and its "slightly less aggressive scale augmentation" is not
  expressible; see the recipe's note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnlab.data.preprocessing import IMAGENET, MNIST_32
from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ACTIVATIONS,
    INIT_SCHEMES,
    NORMS,
    ChannelShuffle,
    activation_class,
    conv2d,
    depthwise_conv2d,
    init_weights_,
    make_norm,
)
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import Recipe

# Table 1, as data.
STEM_CHANNELS = 24  # conv1, 3x3 stride 2
STAGE_UNITS = (4, 8, 4)  # stages 2, 3, 4: one unit with stride 2, then 3, 7, 3 with stride 1
STAGE_CHANNELS = {  # output channels of stages 2, 3, 4 for g groups
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
BOTTLENECK_RATIO = 4  # Section 3.3: bottleneck channels = 1/4 of a unit's output channels


@dataclass(frozen=True)
class ShuffleNetConfig:
    """Choices that tell the ShuffleNet variants apart."""

    groups: int = 3  # g, the groups of the 1x1 convolutions: 1, 2, 3, 4 or 8 (Table 1)
    width_mult: float = 1.0  # s of "ShuffleNet s x": scales every layer's filters
    stem_channels: int = 0  # conv1's filters; 0: 24 s rounded to a multiple of g
    shuffle: bool = True  # channel shuffle after each grouped 1x1 (False: Table 3's baseline)
    small_input: bool = False  # 32x32 images: conv1 with stride 1, no max pool
    norm: str = "batch"  # after every convolution: one of layers.NORMS
    activation: str = "relu"  # one of layers.ACTIVATIONS
    dropout: float = 0.0  # before the classifier (the paper uses none)
    init: str = "kaiming_normal"  # convolutions: one of layers.INIT_SCHEMES


def _multiple(x: float, g: int) -> int:
    """`x` rounded to the nearest multiple of `g` (halves up), at least `g`."""
    return max(g, math.floor(x / g + 0.5) * g)


@dataclass(frozen=True)
class Widths:
    """Channel counts of one configuration."""

    stem: int  # conv1's filters
    stages: tuple[int, int, int]  # output channels of stages 2, 3, 4
    bottlenecks: tuple[int, int, int]  # bottleneck channels of the units of stages 2, 3, 4


def widths(cfg: ShuffleNetConfig) -> Widths:
    """Channel counts for `cfg`: Table 1 scaled by width_mult, kept divisible by groups."""
    g, s = cfg.groups, cfg.width_mult
    stages = tuple(_multiple(s * c, g) for c in STAGE_CHANNELS[g])
    bottlenecks = tuple(_multiple(c / BOTTLENECK_RATIO, g) for c in stages)
    stem = cfg.stem_channels or _multiple(s * STEM_CHANNELS, g)
    return Widths(stem, stages, bottlenecks)  # type: ignore[arg-type]


class ShuffleUnit(nn.Module):
    """Fig. 2 (b) with stride 1 (identity added) or (c) with stride 2 (average-pooled
    shortcut concatenated)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bottleneck: int,
        stride: int,
        groups: int,
        cfg: ShuffleNetConfig,
        first_groups: int | None = None,
    ) -> None:
        super().__init__()
        first_groups = groups if first_groups is None else first_groups
        branch = out_channels - in_channels if stride == 2 else out_channels
        bias = cfg.norm == "none"
        act = activation_class(cfg.activation)
        self.stride = stride
        self.conv1 = conv2d(in_channels, bottleneck, 1, groups=first_groups, bias=bias)  # GConv
        self.norm1 = make_norm(cfg.norm, bottleneck)
        self.act1 = act()
        shuffled = cfg.shuffle and first_groups > 1
        self.shuffle = ChannelShuffle(groups) if shuffled else nn.Identity()
        self.conv2 = depthwise_conv2d(bottleneck, 3, stride, padding=1, bias=bias)  # DWConv
        self.norm2 = make_norm(cfg.norm, bottleneck)  # no activation after the depthwise
        self.conv3 = conv2d(bottleneck, branch, 1, groups=groups, bias=bias)  # GConv
        self.norm3 = make_norm(cfg.norm, branch)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm1(self.conv1(x)))  # (N, in, H, W) -> (N, m, H, W)
        y = self.norm2(self.conv2(self.shuffle(y)))  # -> (N, m, H/stride, W/stride)
        y = self.norm3(self.conv3(y))  # -> (N, out - in, ...) with stride 2, else (N, out, ...)
        if self.stride == 2:
            return self.act(torch.cat((self.shortcut(x), y), dim=1))  # -> (N, out, H/2, W/2)
        return self.act(x + y)


class ShuffleNet(Classifier):
    """conv1 -> max pool -> stages 2, 3, 4 of ShuffleNet units -> global pool -> FC."""

    fixed_input_size = False  # the global average pool takes any size

    def __init__(
        self,
        cfg: ShuffleNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        input_hw: tuple[int, int] = (224, 224),
    ) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, *input_hw))
        w = widths(cfg)
        g = cfg.groups
        bias = cfg.norm == "none"
        stem_stride = 1 if cfg.small_input else 2
        self.conv1 = nn.Sequential(
            conv2d(in_chans, w.stem, 3, stride=stem_stride, padding=1, bias=bias),
            make_norm(cfg.norm, w.stem),
            activation_class(cfg.activation)(),
        )
        self.maxpool = nn.Identity() if cfg.small_input else nn.MaxPool2d(3, stride=2, padding=1)
        channels = w.stem
        for index, (units, out, mid) in enumerate(zip(STAGE_UNITS, w.stages, w.bottlenecks)):
            blocks = []
            for i in range(units):
                first_groups = 1 if index == 0 and i == 0 else g  # Section 3.3
                stride = 2 if i == 0 else 1
                blocks.append(ShuffleUnit(channels, out, mid, stride, g, cfg, first_groups))
                channels = out
            setattr(self, f"stage{index + 2}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels
        maxpool = () if cfg.small_input else ("maxpool",)
        self.stages = ("conv1", *maxpool, "stage2", "stage3", "stage4")
        init_weights_(self, cfg.init)
        self.output = self._classifier(num_classes)

    def _classifier(self, num_classes: int) -> nn.Module:
        fc = nn.Linear(self.num_features, num_classes)
        if self.cfg.init != "default":  # small logits at the start, whatever the scheme
            nn.init.normal_(fc.weight, 0.0, 0.01)
            nn.init.zeros_(fc.bias)
        if self.cfg.dropout > 0:
            return nn.Sequential(nn.Dropout(self.cfg.dropout), fc)
        return fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (N, C, 224, 224) -> (N, 24, 112, 112)  [32x32: -> 32x32]
        x = self.maxpool(x)  # -> (N, 24, 56, 56)  [small input: unchanged]
        x = self.stage2(x)  # -> (N, c2, 28, 28)  [16x16]
        x = self.stage3(x)  # -> (N, c3, 14, 14)  [8x8]
        x = self.stage4(x)  # -> (N, c4, 7, 7)  [4x4]
        return self.pool(x).flatten(1)  # -> (N, c4)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = self._classifier(num_classes)


def _check_config(cfg: ShuffleNetConfig) -> None:
    choices = {"norm": NORMS, "activation": tuple(ACTIVATIONS), "init": INIT_SCHEMES}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(
                f"{name}={getattr(cfg, name)!r}: expected one of {', '.join(allowed)}"
            )
    if cfg.groups not in STAGE_CHANNELS:
        raise CnnlabError(
            f"groups={cfg.groups!r}: expected one of {', '.join(map(str, STAGE_CHANNELS))}"
        )
    if not (isinstance(cfg.width_mult, (int, float)) and 0 < cfg.width_mult <= 8):
        raise CnnlabError(f"width_mult={cfg.width_mult!r}: expected a number in (0, 8]")
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout!r}: expected a probability in [0, 1)")
    stem, g = cfg.stem_channels, cfg.groups
    first = widths(replace(cfg, stem_channels=0)).stages[0]
    if not isinstance(stem, int) or stem < 0 or stem % g or stem >= first:
        raise CnnlabError(
            f"stem_channels={stem!r}: expected 0 (automatic) or a multiple of groups={g} "
            f"below stage 2's {first} channels"
        )
    if widths(cfg).stem >= first:
        raise CnnlabError(
            f"width_mult={cfg.width_mult!r}: too narrow for groups={g} "
            f"(stage 2 would have no more channels than conv1)"
        )


IMAGENET_RECIPE = Recipe(
    preprocessing=IMAGENET,
    optimizer="sgd",
    lr=0.5,
    momentum=0.9,
    weight_decay=4e-5,
    schedule="cosine",
    epochs=240,
    batch_size=1024,
    note=(
        "Section 4: SGD (momentum 0.9, following ResNeXt), batch 1024, weight decay 4e-5, "
        "3 x 10^5 iterations (240 epochs of 1.28 M images), the learning rate decreased "
        "linearly from 0.5 to 0. Linear decay is not among the schedules, so the rate "
        "follows a cosine from 0.5 to 0 (the same end points, higher in the middle). The "
        "paper's 'slightly less aggressive scale augmentation' is not expressible here."
    ),
)

SMALL_RECIPE = Recipe(
    preprocessing=MNIST_32,
    optimizer="adamw",
    lr=2e-3,
    weight_decay=0.05,
    schedule="onecycle",
    epochs=15,
    batch_size=128,
    note=(
        "A short modern recipe for 32x32 inputs, not the paper's. AdamW rather than SGD: "
        "the 960 pooled features share a large positive mean, so SGD at rate 0.1 blows the "
        "classifier's logits up in the first steps on 10 classes."
    ),
)

_TABLE1_NOTE = (
    "Table 1's Complexity leaves out the 1000-way classifier: only then do all five g "
    "match (with it, g = 2, 4, 8 would print 141M, 134M, 138M)"
)
_TABLE1 = {1: "143M", 2: "140M", 3: "137M", 4: "133M", 8: "137M"}
_WITH_FC = "the classifier counted"
_EXTRA: dict[int, tuple[PaperFigure, ...]] = {
    3: (
        PaperFigure(
            "macs",
            "38M",
            "Table 8 (also Table 2's 0.5x row)",
            overrides={"width_mult": 0.5},
            note=_WITH_FC + "; conv1 has 12 filters",
        ),
        PaperFigure(
            "macs",
            "292M",
            "Table 5 (in MFLOPs)",
            overrides={"width_mult": 1.5, "stem_channels": 24},
            note=_WITH_FC + "; conv1 keeps 24 filters, as in the authors' released 1.5x model",
        ),
        PaperFigure(
            "macs",
            "524M",
            "Table 8 (also Tables 5 and 6)",
            overrides={"width_mult": 2.0},
            note=_WITH_FC + "; conv1 has 48 filters",
        ),
    ),
}


def _imagenet(g: int) -> Variant:
    return Variant(
        ShuffleNetConfig(groups=g),
        IMAGENET_RECIPE,
        f"ShuffleNet 1x with g={g} (Table 1); width_mult gives ShuffleNet s x",
        num_classes=1000,
        input_size=(3, 224, 224),
        published=(
            PaperFigure("macs_no_fc", _TABLE1[g], "Table 1", note=_TABLE1_NOTE),
            *_EXTRA.get(g, ()),
        ),
    )


VARIANTS: dict[str, Variant] = {f"shufflenet_v1_g{g}": _imagenet(g) for g in STAGE_CHANNELS}
VARIANTS["shufflenet_v1_g3_small"] = Variant(
    ShuffleNetConfig(groups=3, small_input=True),
    SMALL_RECIPE,
    "ShuffleNet 1x, g=3, for 32x32 inputs: conv1 with stride 1, no max pool",
    num_classes=10,
    input_size=(3, 32, 32),
)


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> ShuffleNet:
    """Build variant `name`; `overrides` replace fields of its ShuffleNetConfig."""
    cfg = replace(VARIANTS[name].config, **overrides)
    _, h, w = VARIANTS[name].input_size
    return ShuffleNet(cfg, num_classes=num_classes, in_chans=in_chans, input_hw=(h, w))
