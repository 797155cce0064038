"""GoogLeNet (Inception v1): Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan,
Vanhoucke and Rabinovich, "Going Deeper with Convolutions", CVPR 2015
(arXiv:1409.4842).

Variants:
- `googlenet`: the network of Table 1 and Fig. 3: conv 7x7/2 (64), max pool 3x3/2,
  LRN, conv 1x1 (64, "reduce") + conv 3x3 (192), LRN, max pool 3x3/2, inception
  3a-3b, max pool, 4a-4e, max pool, 5a-5b, average pool 7x7, dropout 40%, linear.
  Each inception module (Fig. 2(b)) concatenates a 1x1 branch, 1x1 -> 3x3,
  1x1 -> 5x5 (a true 5x5) and 3x3 max pool -> 1x1 ("pool proj"); ReLU after every
  convolution, no batch norm; the two auxiliary classifiers of Section 5 after 4a
  and 4d.
- `googlenet_bn`: the same network with batch norm after every convolution (the
  auxiliary heads' included), convolutions without biases, no LRN.
- `googlenet_small`: for 32x32 inputs (CIFAR-10, MNIST padded to 32), with batch
  norm and no LRN. Changes: conv1 is a 3x3/1 convolution instead of 7x7/2 and the
  first max pool is dropped, so inception 3a, 4a and 5a see 16x16, 8x8 and 4x4 maps
  (the paper's 28x28, 14x14 and 7x7 at 224x224); every channel count is halved
  (`width=0.5`, the auxiliary heads' 128 and 1024 included; 1.8M parameters, 0.12 G
  multiply-adds); the auxiliary heads' 5x5/3 pool leaves 2x2 instead of 4x4.

Auxiliary classifiers (Section 5): `forward(x)` returns the main logits only, in
training and evaluation alike. `forward_with_aux(x)` returns `(logits, [aux1, aux2])`,
the heads after 4a and 4d (an empty list with `aux_logits=False`); a trainer that
finds this method adds `aux_weight` (0.3) times each head's loss to the main loss, as
the paper does in training; at inference the heads are not run. `reset_classifier(n)`
replaces the main classifier and the last linear layer of each head (the heads are
the submodules `output_aux1` and `output_aux2`). The heads' fully connected layer reads
a fixed grid, so a model with them accepts only its own input size; with
`aux_logits=False` the final average pool is global and any large enough input fits.

Deviations from the paper:
- LRN constants: the paper gives none; we use Krizhevsky et al. 2012's (size 5,
  alpha 1e-4, beta 0.75, k 2) through `cnnlab.layers.LocalResponseNorm`.
- Initialisation: the paper states none; `googlenet` uses Xavier (Glorot) uniform
  weights and zero biases, the batch-norm variants He (Kaiming) normal.
- Max pools round up (ceil mode, no padding), which gives Table 1's sizes 112, 56, 28,
  14, 7; the 7x7 average pool is a global average pool (the same at 224x224).
- Table 1's "params" and "ops" columns (`TABLE_1`) disagree with its own layer
  definitions in several rows (`TABLE_1_DISAGREES`). The network follows the layer
  definitions. Its conv1 numbers (2.7K, 34M) are those of a depthwise separable
  7x7/2 convolution with depth multiplier 8, available as `conv1="separable"`;
  the default is the dense convolution its layer columns describe.
- Training (see the recipes' notes): synchronous SGD instead of DistBelief's
  asynchronous SGD, no Polyak averaging, no photometric distortions or the paper's
  scale and aspect-ratio crops, no ensemble or 144-crop testing, and, by default, a
  step schedule that the recipe cannot set to the paper's 4% every 8 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnlab.data.preprocessing import IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ACTIVATIONS,
    INIT_SCHEMES,
    NORMS,
    LocalResponseNorm,
    activation_class,
    init_weights_,
    make_norm,
)
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import SHORT_RECIPE_32, Recipe


@dataclass(frozen=True)
class GoogLeNetConfig:
    """Choices that tell the GoogLeNet variants apart."""

    stem: str = "imagenet"  # imagenet (conv1 7x7/2, max pool; Table 1) | small (3x3/1, no pool)
    conv1: str = "dense"  # dense | separable (depthwise, depth multiplier 8, then 1x1)
    width: float = 1.0  # multiplier of every channel count (0.5 halves them)
    norm: str = "none"  # make_norm kind after every convolution (none: the paper)
    lrn: bool = True  # LRN after the first max pool and after the 3x3 conv2 (Fig. 3)
    activation: str = "relu"  # after every convolution and the auxiliary heads' FC 1024
    dropout: float = 0.4  # before the final linear layer (Table 1: 40%)
    aux_logits: bool = True  # the auxiliary classifiers of Section 5 (after 4a and 4d)
    aux_dropout: float = 0.7  # in the auxiliary heads, before their last linear layer
    init: str = "xavier_uniform"  # a scheme of cnnlab.layers.init (the paper names none)


# Table 1, per inception module: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}

# Table 1's "params" and "ops" columns exactly as printed, keyed by our stage names:
# "conv2" is the table's "convolution 3x3/1" row of depth 2 (the 1x1 reduce and the 3x3),
# "output" its "linear" row; the pooling, dropout and softmax rows print no numbers.
TABLE_1: dict[str, tuple[str, str]] = {
    "conv1": ("2.7K", "34M"),
    "conv2": ("112K", "360M"),
    "inception3a": ("159K", "128M"),
    "inception3b": ("380K", "304M"),
    "inception4a": ("364K", "73M"),
    "inception4b": ("437K", "88M"),
    "inception4c": ("463K", "100M"),
    "inception4d": ("580K", "119M"),
    "inception4e": ("840K", "170M"),
    "inception5a": ("1072K", "54M"),
    "inception5b": ("1388K", "71M"),
    "output": ("1000K", "1M"),
}
# How Table 1 counts (what fits the rows that agree): "params" are the weights of the
# convolutions and linear layers, biases not counted, in K = 1,024 (conv2's 114,688
# weights are 112.00K, the linear layer's 1,024,000 are 1000.00K); "ops" are
# multiply-adds in M = 10^6. A row agrees when our number, in that unit, is within one
# unit of the last printed digit (the table's rounding direction is not consistent).
TABLE_1_UNITS = {"params": 1024, "ops": 10**6}

# The entries that disagree with the layers the table defines, for `googlenet` (dense
# conv1, aux_logits=False); ours first, then what the table prints.
TABLE_1_DISAGREES: dict[tuple[str, str], str] = {
    ("conv1", "params"): "9,408 weights = 9.19K (dense 7x7x3x64) vs 2.7K; a depthwise "
    "separable 7x7 with depth multiplier 8 has 7*7*3*8 + 24*64 = 2,712 = 2.65K",
    ("conv1", "ops"): "118.01M (dense) vs 34M; the separable conv1 does 2,712 * 112^2 = 34.02M",
    ("inception4a", "params"): "375,552 weights = 366.75K vs 364K (its 73M = 364K * 14^2)",
    ("inception4c", "params"): "509,440 weights = 497.50K vs 463K (its 100M ops fit ours, 99.85M)",
    ("inception4d", "params"): "604,672 weights = 590.50K vs 580K (its 119M ops fit ours, 118.52M)",
    ("inception4e", "params"): "867,328 weights = 847.00K vs 840K (its 170M ops fit ours, 170.00M)",
    ("inception5a", "params"): "1,042,432 weights = 1018.00K vs 1072K (its 54M ops = 1072K * 7^2)",
    ("inception5a", "ops"): "51.08M vs 54M (= its own 1072K * 7^2 = 53.79M)",
    ("inception5b", "params"): "1,442,816 weights = 1409.00K vs 1388K (its 71M fits ours)",
}

_CHOICES = {
    "stem": ("imagenet", "small"),
    "conv1": ("dense", "separable"),
    "norm": NORMS,
    "activation": tuple(ACTIVATIONS),
    "init": INIT_SCHEMES,
}
_DEPTH_MULTIPLIER = 8  # of the separable conv1: 3 input channels -> 24 depthwise maps


class ConvBlock(nn.Sequential):
    """Convolution ("same" padding), normalisation (optional), activation."""

    def __init__(
        self, cfg: GoogLeNetConfig, c_in: int, c_out: int, kernel: int, stride: int = 1
    ) -> None:
        bias = cfg.norm == "none"
        conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=bias)
        super().__init__(conv, make_norm(cfg.norm, c_out), activation_class(cfg.activation)())


class SeparableConvBlock(nn.Sequential):
    """Depthwise k x k (depth multiplier 8, no bias), pointwise 1x1, norm, activation:
    the conv1 whose size Table 1 prints."""

    def __init__(
        self, cfg: GoogLeNetConfig, c_in: int, c_out: int, kernel: int, stride: int = 1
    ) -> None:
        mid = c_in * _DEPTH_MULTIPLIER
        super().__init__(
            nn.Conv2d(c_in, mid, kernel, stride, padding=kernel // 2, groups=c_in, bias=False),
            nn.Conv2d(mid, c_out, 1, bias=cfg.norm == "none"),
            make_norm(cfg.norm, c_out),
            activation_class(cfg.activation)(),
        )


class Inception(nn.Module):
    """Fig. 2(b): 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated."""

    def __init__(
        self,
        cfg: GoogLeNetConfig,
        c_in: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        c5_reduce: int,
        c5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = ConvBlock(cfg, c_in, c1, 1)
        self.branch3 = nn.Sequential(
            ConvBlock(cfg, c_in, c3_reduce, 1), ConvBlock(cfg, c3_reduce, c3, 3)
        )
        self.branch5 = nn.Sequential(
            ConvBlock(cfg, c_in, c5_reduce, 1), ConvBlock(cfg, c5_reduce, c5, 5)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), ConvBlock(cfg, c_in, pool_proj, 1)
        )
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([b(x) for b in branches], dim=1)  # (N, c1 + c3 + c5 + pool_proj, H, W)


class AuxiliaryHead(nn.Module):
    """Section 5: avg pool 5x5/3, 1x1 conv (128) + ReLU, FC (1024) + ReLU, dropout 70%,
    linear to the classes (`output`)."""

    def __init__(
        self, cfg: GoogLeNetConfig, c_in: int, grid: int, width: int, hidden: int, classes: int
    ) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = ConvBlock(cfg, c_in, width, 1)
        act = activation_class(cfg.activation)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * grid * grid, hidden), act())
        self.dropout = nn.Dropout(cfg.aux_dropout) if cfg.aux_dropout > 0 else nn.Identity()
        self.output = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))  # (N, C, 14, 14) -> (N, C, 4, 4) -> (N, 128, 4, 4)
        return self.output(self.dropout(self.fc(x)))  # -> (N, 1024) -> (N, classes)


class GoogLeNet(Classifier):
    """Stem -> inception 3a-3b -> 4a-4e -> 5a-5b -> global average pool -> dropout -> linear.

    `forward(x)` gives the main logits; `forward_with_aux(x)` gives
    `(logits, [aux1, aux2])` with the auxiliary heads' logits after 4a and 4d (an
    empty list without heads); the heads' losses are weighted by `aux_weight`.
    """

    aux_weight = 0.3  # Section 5: weight of each auxiliary loss in the total loss

    def __init__(
        self,
        cfg: GoogLeNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        input_hw: tuple[int, int] = (224, 224),
    ) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, *input_hw))
        self.fixed_input_size = cfg.aux_logits  # the heads' FC reads a fixed grid

        def w(channels: int) -> int:
            return max(1, round(channels * cfg.width))

        def lrn() -> nn.Module:
            return LocalResponseNorm(5, 1e-4, 0.75, 2.0) if cfg.lrn else nn.Identity()

        conv1 = SeparableConvBlock if cfg.conv1 == "separable" else ConvBlock
        stages = ["conv1"]
        if cfg.stem == "imagenet":
            self.conv1 = conv1(cfg, in_chans, w(64), 7, stride=2)
            self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            stages.append("pool1")
        else:
            self.conv1 = conv1(cfg, in_chans, w(64), 3)
        self.lrn1 = lrn()
        self.conv2 = nn.Sequential(
            ConvBlock(cfg, w(64), w(64), 1), ConvBlock(cfg, w(64), w(192), 3)
        )
        self.lrn2 = lrn()
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        stages += ["conv2", "pool2"]
        channels = w(192)
        for name, widths in INCEPTION.items():
            module = Inception(cfg, channels, *map(w, widths))
            setattr(self, name, module)
            channels = module.out_channels
            stages.append(name)
            if name in ("inception3b", "inception4e"):
                pool = "pool3" if name == "inception3b" else "pool4"
                setattr(self, pool, nn.MaxPool2d(3, stride=2, ceil_mode=True))
                stages.append(pool)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.stages = tuple(stages)
        self.num_features = channels
        self.output = self._classifier(num_classes)
        if cfg.aux_logits:  # named output_* since they are classifiers too
            grid = _aux_grid(input_hw, cfg.stem)
            for i, tap in enumerate((self.inception4a, self.inception4d), start=1):
                head = AuxiliaryHead(cfg, tap.out_channels, grid, w(128), w(1024), num_classes)
                setattr(self, f"output_aux{i}", head)
        init_weights_(self, cfg.init)

    def _classifier(self, num_classes: int) -> nn.Module:
        dropout = nn.Dropout(self.cfg.dropout) if self.cfg.dropout > 0 else nn.Identity()
        return nn.Sequential(dropout, nn.Linear(self.num_features, num_classes))

    @property
    def aux_heads(self) -> list[AuxiliaryHead]:
        """The auxiliary classifiers after 4a and 4d (none with aux_logits=False)."""
        heads = (getattr(self, "output_aux1", None), getattr(self, "output_aux2", None))
        return [h for h in heads if h is not None]

    def _trunk(self, x: torch.Tensor, taps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Input -> (N, num_features); `taps`, when given, receives the 4a and 4d maps."""
        x = self.conv1(x)  # (N, C, 224, 224) -> (N, 64, 112, 112)  [small: 32x32 stays]
        if self.cfg.stem == "imagenet":
            x = self.pool1(x)  # -> (N, 64, 56, 56)
        x = self.lrn2(self.conv2(self.lrn1(x)))  # -> (N, 64, 56, 56) -> (N, 192, 56, 56)
        x = self.pool2(x)  # -> (N, 192, 28, 28)  [small: 16x16]
        x = self.inception3b(self.inception3a(x))  # -> (N, 256, 28, 28) -> (N, 480, 28, 28)
        x = self.inception4a(self.pool3(x))  # -> (N, 480, 14, 14) -> (N, 512, 14, 14)
        if taps is not None:
            taps.append(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # -> ... (N, 528, 14, 14)
        if taps is not None:
            taps.append(x)
        x = self.pool4(self.inception4e(x))  # -> (N, 832, 14, 14) -> (N, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # -> (N, 832, 7, 7) -> (N, 1024, 7, 7)
        return self.avgpool(x).flatten(1)  # -> (N, 1024, 1, 1) -> (N, 1024)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(main logits, [aux1 logits, aux2 logits]); the list is empty without heads."""
        taps: list[torch.Tensor] = []
        logits = self.forward_head(self._trunk(x, taps))
        return logits, [head(tap) for head, tap in zip(self.aux_heads, taps, strict=False)]

    def reset_classifier(self, num_classes: int) -> None:
        """A new main classifier and new last linear layers of the auxiliary heads."""
        self.num_classes = num_classes
        self.output = self._classifier(num_classes)
        init_weights_(self.output, self.cfg.init)
        for head in self.aux_heads:
            head.output = nn.Linear(head.output.in_features, num_classes)
            init_weights_(head.output, self.cfg.init)


def _aux_grid(input_hw: tuple[int, int], stem: str) -> int:
    """Side of the grid the auxiliary heads' 5x5/3 pool leaves, for an input (H, W)."""
    sides = []
    for s in input_hw:
        if stem == "imagenet":
            s = (s - 1) // 2 + 1  # conv1 7x7/2, padding 3
        for _ in range(3 if stem == "imagenet" else 2):  # 3x3/2 max pools (ceil) before 4a
            s = -(-(s - 3) // 2) + 1 if s >= 3 else 0
        sides.append((s - 5) // 3 + 1 if s >= 5 else 0)
    if sides[0] != sides[1] or sides[0] < 1:
        raise CnnlabError(
            f"input {input_hw[0]}x{input_hw[1]}: the auxiliary heads need a square input "
            "whose inception 4a map is at least 5x5 (or aux_logits=False)"
        )
    return sides[0]


def _check_config(cfg: GoogLeNetConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(f"{name}={getattr(cfg, name)!r}: expected one of {allowed}")
    for name in ("dropout", "aux_dropout"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise CnnlabError(f"{name}={getattr(cfg, name)}: expected a probability in [0, 1)")
    if not 0.0 < cfg.width <= 4.0:
        raise CnnlabError(f"width={cfg.width}: expected a channel multiplier in (0, 4]")


_PAPER_RECIPE = Recipe(
    preprocessing=IMAGENET,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=2e-4,
    schedule="step",
    gamma=0.96,
    step_size=8,
    epochs=90,
    batch_size=128,
    note=(
        "Section 6: asynchronous SGD on the DistBelief system with momentum 0.9 and a fixed "
        "schedule that lowers the rate by 4% every 8 epochs, Polyak averaging of the weights "
        "for the final model; the initial rate, batch size, weight decay and length are not "
        "given (here 0.01, 128, 0.0002, 90 epochs). Synchronous SGD here, no Polyak "
        "averaging. Data: the paper samples patches of 8% to 100% of the image area with "
        "aspect ratios in [3/4, 4/3], applies Howard's photometric distortions and random "
        "interpolation methods, and tests an ensemble of 7 networks on 144 crops per image; "
        "here only the per-channel mean/std normalisation (IMAGENET), single-model, "
        "single-crop. The auxiliary losses are weighted 0.3 (GoogLeNet.aux_weight)."
    ),
)

_BN = GoogLeNetConfig(norm="batch", lrn=False, init="kaiming_normal")

_NO_AUX = {"aux_logits": False}
_PARAMS_NOTE = (
    "the paper prints no total (Table 1's params column sums to 6,797.7K); ours 6,998,552 "
    "with biases, 6,990,272 without: 7.0M either way"
)
_MACS_NOTE = (
    "with the separable conv1 that Table 1's conv1 row counts (34.0M); with the dense 7x7 "
    "conv1, 1,582,671,872 (1.6G). Table 1's ops column sums to 1,502M"
)

VARIANTS: dict[str, Variant] = {
    "googlenet": Variant(
        GoogLeNetConfig(),
        _PAPER_RECIPE,
        "GoogLeNet (Inception v1) as in Table 1: LRN, true 5x5 branches, auxiliary heads",
        num_classes=1000,
        input_size=(3, 224, 224),
        published=(
            PaperFigure(
                "params",
                "7.0M",
                'course material ("about 7 M"); the paper prints no total',
                overrides=_NO_AUX,
                note=_PARAMS_NOTE,
            ),
            PaperFigure(
                "macs",
                "1.5G",
                "Section 1",
                overrides={**_NO_AUX, "conv1": "separable"},
                note=_MACS_NOTE,
            ),
        ),
    ),
    "googlenet_bn": Variant(
        _BN,
        Recipe(
            preprocessing=IMAGENET,
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="cosine",
            epochs=90,
            batch_size=256,
            note=(
                "Not the paper's recipe (the paper has no batch norm): a modern one, "
                "synchronous SGD with a cosine schedule, auxiliary losses weighted 0.3."
            ),
        ),
        "GoogLeNet with batch norm after every convolution, no LRN",
        num_classes=1000,
        input_size=(3, 224, 224),
    ),
    "googlenet_small": Variant(
        replace(_BN, stem="small", width=0.5),
        replace(SHORT_RECIPE_32, nesterov=False),
        "GoogLeNet for 32x32: 3x3 stem without the first pool, half widths, batch norm",
        num_classes=10,
        input_size=(3, 32, 32),
    ),
}


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> GoogLeNet:
    """Build variant `name`; `overrides` replace fields of its GoogLeNetConfig."""
    cfg = replace(VARIANTS[name].config, **overrides)
    _, h, w = VARIANTS[name].input_size
    return GoogLeNet(cfg, num_classes=num_classes, in_chans=in_chans, input_hw=(h, w))
