"""ResNet: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016 (arXiv 1512.03385).

Variants:
- `resnet18`, `resnet34`: ImageNet, Table 1; basic blocks (two 3x3 convolutions).
- `resnet50`, `resnet101`, `resnet152`: ImageNet, Table 1; bottleneck blocks (1x1, 3x3,
  1x1 with 4x expansion), the downsampling stride in the first 1x1 (the original "v1").
- `plain18`, `plain34`: the ImageNet plain baselines of Section 4.1 (the same stacks,
  no shortcuts).
- `resnet20`, `resnet32`, `resnet44`, `resnet56`, `resnet110`: CIFAR-10, Section 4.2;
  6n+2 layers: a 3x3 convolution with 16 filters, three stages of n basic blocks with 16,
  32 and 64 filters on 32x32, 16x16 and 8x8 maps, global average pooling, a 10-way FC.
  Option A shortcuts. These are the paper's own networks for small inputs, so the family
  has no `_small` variants.
- `plain20`, `plain32`, `plain44`, `plain56`, `plain110`: the CIFAR-10 plain baselines.

Every convolution is followed by batch normalisation; ReLU follows each normalisation
inside a block and the addition at its end (Fig. 2, Fig. 5). Shortcuts (option
`shortcut`, Section 3.3): "A" identity, with stride-2 subsampling and zero-padded extra
channels where the dimensions grow (no parameters); "B" identity, with a projection
(1x1 convolution + BN) only where the dimensions change (the default of the ImageNet
variants; Table 2's ResNet-18/34 used A: `shortcut="A"`); "C" projections everywhere.
The stages are named `stem` (conv1), `layer1` ... `layer4` (the paper's conv2_x ...
conv5_x; `layer1` ... `layer3` on CIFAR); the stem's 3x3 max pool is module `maxpool`.
Initialisation "paper": He et al. 2015 ("Delving deep into rectifiers"), weights drawn
from N(0, 2/fan_in), the forward-propagation case of their eq. 10 (the one that paper
adopts), for convolutions and the FC; biases 0, BN scale 1 and shift 0
(`init="kaiming_normal_fan_out"` gives the fan-out variant of fb.resnet.torch and
torchvision).

Deviations from the paper:
- The zero channels of option A are appended after the input's channels (the paper
  does not say where they go).
- Training recipes cannot express the paper's ImageNet augmentation (scale
  augmentation, 224 crops, flips, colour augmentation; the CIFAR recipe has its 4-pixel
  padding, random 32x32 crops and flips, on CIFAR-10 only: on MNIST or an image folder
  it stays off unless `--augment` asks for it), its per-pixel mean subtraction (per-channel
  mean/std here), its "divide by 10 when the error plateaus" (fixed milestones here), or
  resnet110's 400 iterations of warm-up at rate 0.01; see each recipe's note.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.preprocessing import CIFAR10, IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.layers import ACTIVATIONS, INIT_SCHEMES, NORMS, activation_class, init_weights_
from cnnlab.layers import make_norm as _make_norm
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import Recipe


@dataclass(frozen=True)
class ResNetConfig:
    """Choices that tell the ResNet variants apart."""

    block: str = "basic"  # basic (3x3, 3x3) | bottleneck (1x1, 3x3, 1x1 with 4x expansion)
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)  # filters per stage (bottleneck: inner)
    stem: str = "imagenet"  # imagenet: 7x7/2 conv 64 + 3x3/2 max pool | cifar: 3x3 conv
    shortcut: str = "B"  # A zero-padded identity | B projection where dims change | C always
    stride_at: str = "1x1"  # bottleneck's downsampling: 1x1 (the paper) | 3x3 (torchvision v1.5)
    residual: bool = True  # False: the plain network (no shortcuts; `shortcut` is unused)
    norm: str = "batch"  # after every convolution: a kind of layers.make_norm (none: biases)
    activation: str = "relu"  # a name of layers.ACTIVATIONS
    dropout: float = 0.0  # before the classifier (the paper uses none)
    init: str = "paper"  # paper (He et al. 2015, fan_in) | a scheme of layers.init


_CHOICES = {
    "block": ("basic", "bottleneck"),
    "stem": ("imagenet", "cifar"),
    "shortcut": ("A", "B", "C"),
    "stride_at": ("1x1", "3x3"),
    "norm": NORMS,
    "activation": tuple(ACTIVATIONS),
    "init": ("paper", *INIT_SCHEMES),
}


def _check_config(cfg: ResNetConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(f"{name}={getattr(cfg, name)!r}: expected one of {allowed}")
    if not isinstance(cfg.residual, bool):
        raise CnnlabError(f"residual={cfg.residual!r}: expected True or False")
    if not cfg.layers or any(not isinstance(n, int) or n < 1 for n in cfg.layers):
        raise CnnlabError(f"layers={cfg.layers!r}: expected a tuple of block counts >= 1")
    if len(cfg.widths) != len(cfg.layers) or any(
        not isinstance(w, int) or w < 1 for w in cfg.widths
    ):
        raise CnnlabError(
            f"widths={cfg.widths!r}: expected {len(cfg.layers)} positive integers "
            f"(one per stage of layers={cfg.layers!r})"
        )
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout}: expected a probability in [0, 1)")


def _conv(cfg: ResNetConfig, cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    """k x k convolution, 'same' padding for odd k; a bias only when there is no norm."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=cfg.norm == "none")


class ZeroPadShortcut(nn.Module):
    """Option A: identity, subsampled by `stride`, with zero channels appended up to `cout`."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (N, C, H, W) -> (N, C, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # -> (N, C', H/s, W/s)


def _shortcut(cfg: ResNetConfig, cin: int, cout: int, stride: int) -> nn.Module | None:
    """The block's shortcut by option A/B/C; None for plain networks."""
    if not cfg.residual:
        return None
    changes = stride != 1 or cin != cout
    if cfg.shortcut == "C" or (cfg.shortcut == "B" and changes):
        return nn.Sequential(_conv(cfg, cin, cout, 1, stride), _make_norm(cfg.norm, cout))
    return ZeroPadShortcut(cin, cout, stride) if changes else nn.Identity()


class BasicBlock(nn.Module):
    """3x3 conv (stride s) - BN - ReLU - 3x3 conv - BN, + shortcut, ReLU (Fig. 2 / 5 left)."""

    expansion = 1

    def __init__(self, cfg: ResNetConfig, cin: int, width: int, stride: int) -> None:
        super().__init__()
        act = activation_class(cfg.activation)
        self.conv1 = _conv(cfg, cin, width, 3, stride)
        self.bn1 = _make_norm(cfg.norm, width)
        self.act1 = act()
        self.conv2 = _conv(cfg, width, width, 3)
        self.bn2 = _make_norm(cfg.norm, width)
        self.shortcut = _shortcut(cfg, cin, width, stride)
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (N, C, H, W) -> (N, W', H/s, W/s)
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act2(out)


class Bottleneck(nn.Module):
    """1x1 conv (stride s) - BN - ReLU - 3x3 conv - BN - ReLU - 1x1 conv (4x) - BN,
    + shortcut, ReLU (Fig. 5 right). The stride sits in the first 1x1, as in the paper, or
    with `stride_at="3x3"` in the 3x3 ("ResNet v1.5", torchvision's and most frameworks')."""

    expansion = 4

    def __init__(self, cfg: ResNetConfig, cin: int, width: int, stride: int) -> None:
        super().__init__()
        act = activation_class(cfg.activation)
        cout = width * self.expansion
        first, second = (stride, 1) if cfg.stride_at == "1x1" else (1, stride)
        self.conv1 = _conv(cfg, cin, width, 1, first)
        self.bn1 = _make_norm(cfg.norm, width)
        self.act1 = act()
        self.conv2 = _conv(cfg, width, width, 3, second)
        self.bn2 = _make_norm(cfg.norm, width)
        self.act2 = act()
        self.conv3 = _conv(cfg, width, cout, 1)
        self.bn3 = _make_norm(cfg.norm, cout)
        self.shortcut = _shortcut(cfg, cin, cout, stride)
        self.act3 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (N, C, H, W) -> (N, W', H/s, W/s)
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))  # -> (N, 4W', H/s, W/s)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act3(out)


def paper_init_(model: nn.Module) -> None:
    """He et al. 2015: conv and FC weights ~ N(0, 2/fan_in); biases 0; norm scale 1, shift 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(Classifier):
    """stem -> [max pool] -> stages of blocks -> global average pool -> FC."""

    fixed_input_size = False

    def __init__(
        self,
        cfg: ResNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        input_hw: tuple[int, int] = (224, 224),
    ) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, *input_hw))
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        stem_width = cfg.widths[0]
        imagenet = cfg.stem == "imagenet"
        act = activation_class(cfg.activation)
        stem_conv = _conv(
            cfg, in_chans, stem_width, 7 if imagenet else 3, stride=2 if imagenet else 1
        )
        self.stem = nn.Sequential(stem_conv, _make_norm(cfg.norm, stem_width), act())
        # registered after the stem, so that the summary lists them in forward order
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else nn.Identity()
        cin = stem_width
        names = []
        for i, (n, width) in enumerate(zip(cfg.layers, cfg.widths)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(cfg, cin, width, stride))
                cin = width * block.expansion
            names.append(f"layer{i + 1}")
            self.add_module(names[-1], nn.Sequential(*blocks))
        self.stages = ("stem", *names)
        self.num_features = cin
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.output = self._classifier(num_classes)
        if cfg.init == "paper":
            paper_init_(self)
        else:
            init_weights_(self, cfg.init)

    def _classifier(self, num_classes: int) -> nn.Module:
        fc = nn.Linear(self.num_features, num_classes)
        if self.cfg.dropout > 0:
            return nn.Sequential(nn.Dropout(self.cfg.dropout), fc)
        return fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # ImageNet 224: (N, C, 224, 224) -> stem (N, 64, 112, 112) -> maxpool (N, 64, 56, 56)
        # CIFAR 32: (N, C, 32, 32) -> stem (N, 16, 32, 32); no max pool
        x = self.maxpool(self.stem(x))
        for name in self.stages[1:]:
            x = getattr(self, name)(x)  # each later stage halves H, W: ... -> (N, F, 7, 7)
        return self.pool(x).flatten(1)  # -> (N, F, 1, 1) -> (N, F)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = self._classifier(num_classes)
        if self.cfg.init == "paper":
            paper_init_(self.output)
        else:
            init_weights_(self.output, self.cfg.init)


_IMAGENET_NOTE = (
    "He et al. 2016, Section 3.4: SGD, batch 256, rate 0.1 divided by 10 when the error "
    "plateaus, momentum 0.9, weight decay 0.0001, no dropout, up to 60x10^4 iterations "
    "(= 120 epochs of the 1,281,167 training images). Here: 120 epochs, the rate divided "
    "at fixed epochs 60 and 90 (the multistep default, 1/2 and 3/4 of the run) since the "
    "paper's plateaus are not given. Not expressed: scale augmentation (shorter side "
    "in [256, 480]), 224 crops, flips, colour augmentation, per-pixel mean subtraction "
    "(per-channel mean/std here), 10-crop testing."
)
_CIFAR_NOTE = (
    "He et al. 2016, Section 4.2: SGD, batch 128, rate 0.1 divided by 10 at 32k and 48k "
    "iterations, stop at 64k, momentum 0.9, weight decay 0.0001, no dropout. Converted on "
    "the 50,000 training images (391 steps per epoch): 164 epochs, rate divided at "
    "epochs 82 and 123 (the multistep default, 1/2 and 3/4 of the run; 64k iterations "
    "= 163.8 epochs). On the paper's 45k/5k train/val split (352 steps per epoch) the "
    "same schedule is 182 epochs with drops at 91 and 136. Augmentation as the paper's: "
    "4-pixel padding, random 32x32 crops, horizontal flips, on CIFAR-10 only (`--augment "
    "none` turns it off there, `--augment crop:4 flip` on other data). Not expressed: "
    "per-pixel mean subtraction (per-channel mean/std here)."
)
_WARMUP_NOTE = (
    " For the 110-layer net the paper warms up at rate 0.01 until the training error "
    "is below 80% (about 400 iterations), then returns to 0.1; not expressed here."
)


def _imagenet_recipe() -> Recipe:
    return Recipe(
        preprocessing=IMAGENET,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="multistep",
        epochs=120,
        batch_size=256,
        note=_IMAGENET_NOTE,
    )


def _cifar_recipe(warmup_note: bool = False) -> Recipe:
    return Recipe(
        preprocessing=CIFAR10,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="multistep",
        epochs=164,
        batch_size=128,
        augment=("crop:4", "flip"),
        augment_for=("cifar10",),
        channels_last=True,  # resnet20 trains 1.25x as fast: benchmarks/results/speed_options.md
        note=_CIFAR_NOTE + (_WARMUP_NOTE if warmup_note else ""),
    )


_TABLE1 = (
    "Table 1 'FLOPs' are multiply-adds. Counted: every convolution, the option-B "
    "projection shortcuts ({proj}) and the 1000-way FC ({fc}); ours {ours}. "
)
_TABLE1_RULE = (
    " Table 1 fits no single rounding rule: resnet34 (3.664G) and resnet50 (3.858G) are "
    "printed truncated, resnet101 (7.570G) and resnet152 (11.282G) rounded to nearest."
)
_IMAGENET = {
    # name: (block, layers, Table 1 FLOPs as printed, rounding, what fits)
    "resnet18": (
        "basic",
        (2, 2, 2, 2),
        "1.8G",
        "nearest",
        _TABLE1.format(proj="19.3M", fc="0.5M", ours="1.814G")
        + "Nearest and truncation both give 1.8.",
    ),
    "resnet34": (
        "basic",
        (3, 4, 6, 3),
        "3.6G",
        "down",
        _TABLE1.format(proj="19.3M", fc="0.5M", ours="3.664G")
        + "Consistent only with truncation (nearest: 3.7). Without the projections "
        "(option A, or plain34) it is 3.645G, which rounds to 3.6; the paper does not say "
        "which option Table 1 counts." + _TABLE1_RULE,
    ),
    "resnet50": (
        "bottleneck",
        (3, 4, 6, 3),
        "3.8G",
        "down",
        _TABLE1.format(proj="359.7M", fc="2.0M", ours="3.858G")
        + "Consistent only with truncation (nearest: 3.9); without the projections it "
        "would be 3.498G, so they are counted." + _TABLE1_RULE,
    ),
    "resnet101": (
        "bottleneck",
        (3, 4, 23, 3),
        "7.6G",
        "nearest",
        _TABLE1.format(proj="359.7M", fc="2.0M", ours="7.570G")
        + "Consistent only with rounding to nearest (truncation: 7.5)."
        + _TABLE1_RULE,
    ),
    "resnet152": (
        "bottleneck",
        (3, 8, 36, 3),
        "11.3G",
        "nearest",
        _TABLE1.format(proj="359.7M", fc="2.0M", ours="11.282G")
        + "Consistent only with rounding to nearest (truncation: 11.2)."
        + _TABLE1_RULE,
    ),
}
_CIFAR = {
    # name: (n, Table 6 params as printed)
    "resnet20": (3, "0.27M"),
    "resnet32": (5, "0.46M"),
    "resnet44": (7, "0.66M"),
    "resnet56": (9, "0.85M"),
    "resnet110": (18, "1.7M"),
}
_RESNET50_PARAMS = PaperFigure(
    "params",
    "25,557,032",
    "torchvision's resnet50 (not printed in the paper)",
    note=(
        "The paper prints no parameter counts for its ImageNet networks; this is the count "
        "of torchvision's ResNet-50, which has the same parameters as the paper's (option "
        "B; its stride sits in the 3x3 instead, which changes MACs, not parameters)."
    ),
)

_PLAIN34_FLOPS = PaperFigure(
    "macs",
    "3.6G",
    "Section 3.3",
    note="'3.6 billion FLOPs (multiply-adds)'; ours 3.645G: every convolution and the FC.",
)

VARIANTS: dict[str, Variant] = {}
for _name, (_block, _layers, _flops, _rounding, _note) in _IMAGENET.items():
    _depth = _name.removeprefix("resnet")
    _flops_figure = PaperFigure("macs", _flops, "Table 1", rounding=_rounding, note=_note)
    VARIANTS[_name] = Variant(
        ResNetConfig(block=_block, layers=_layers),
        _imagenet_recipe(),
        f"ResNet-{_depth} for ImageNet (Table 1): {_block} blocks, option B shortcuts",
        num_classes=1000,
        input_size=(3, 224, 224),
        published=(_flops_figure, _RESNET50_PARAMS) if _depth == "50" else (_flops_figure,),
    )
for _depth, _layers in (("18", (2, 2, 2, 2)), ("34", (3, 4, 6, 3))):
    VARIANTS[f"plain{_depth}"] = Variant(
        ResNetConfig(layers=_layers, residual=False),
        _imagenet_recipe(),
        f"Plain-{_depth} for ImageNet (Section 4.1): the ResNet-{_depth} stack, no shortcuts",
        num_classes=1000,
        input_size=(3, 224, 224),
        published=(_PLAIN34_FLOPS,) if _depth == "34" else (),
    )
for _name, (_n, _params) in _CIFAR.items():
    _depth = _name.removeprefix("resnet")
    _config = ResNetConfig(layers=(_n,) * 3, widths=(16, 32, 64), stem="cifar", shortcut="A")
    VARIANTS[_name] = Variant(
        _config,
        _cifar_recipe(warmup_note=_n == 18),
        f"ResNet-{_depth} for CIFAR-10 (Section 4.2): 6n+2 layers, n={_n}, option A",
        num_classes=10,
        input_size=(3, 32, 32),
        published=(PaperFigure("params", _params, "Table 6"),),
    )
for _name, (_n, _params) in _CIFAR.items():
    _depth = _name.removeprefix("resnet")
    VARIANTS[f"plain{_depth}"] = Variant(
        ResNetConfig(layers=(_n,) * 3, widths=(16, 32, 64), stem="cifar", residual=False),
        _cifar_recipe(),
        f"Plain-{_depth} for CIFAR-10 (Section 4.2): the ResNet-{_depth} stack, no shortcuts",
        num_classes=10,
        input_size=(3, 32, 32),
    )


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> ResNet:
    """Build variant `name`; `overrides` replace fields of its ResNetConfig."""
    variant = VARIANTS[name]
    cfg = replace(variant.config, **overrides)
    return ResNet(cfg, num_classes=num_classes, in_chans=in_chans, input_hw=variant.input_size[1:])
