"""DenseNet: Huang, Liu, van der Maaten and Weinberger, "Densely Connected
Convolutional Networks", CVPR 2017 (arXiv 1608.06993).

Every layer of a dense block reads the concatenation of the block input and
the k feature maps ("growth rate") of every earlier layer, through
batch norm - ReLU - convolution (pre-activation). With bottlenecks ("B") each
layer is BN-ReLU-1x1 conv (4k maps)-BN-ReLU-3x3 conv (k maps); with
compression ("C") a transition (BN-ReLU-1x1 conv-2x2 average pool) keeps
floor(theta * m) of its m maps, theta = 0.5. After the last block: BN-ReLU,
global average pooling and a linear classifier. Depth L counts the
convolutions and the fully connected layer, as the paper does. Stages:
`stem`, `block1`, `transition1`, ..., `block4` (`block3` on CIFAR) and
`final` (the last BN-ReLU). Initialisation `paper`: He et al. 2015 as the
authors' released code draws it, N(0, 2 / (k * k * output maps)) for every
convolution (fan-out), batch norm weight 1 and bias 0, linear bias 0 with
PyTorch's default linear weight (the same U(+-1/sqrt(fan-in)) as Torch7's).

Variants:
- `densenet121`, `densenet169`, `densenet201`, `densenet264`: the ImageNet
  DenseNet-BC of Table 1 (k = 32; blocks of 6-12-24-16, 6-12-32-32,
  6-12-48-32 and 6-12-64-48 layers), 3x224x224 input, 1,000 classes; stem
  7x7/2 convolution of 2k maps, BN-ReLU, 3x3/2 max pool. (Counted like the
  others, 6-12-64-48 gives 265 layers; the name is the paper's.)
- `densenet40_k12`, `densenet100_k12`, `densenet100_k24`: the basic CIFAR
  DenseNet of Section 3 (no bottleneck, no compression), (L - 4) / 3 layers in
  each of three dense blocks, a first 3x3 convolution of 16 maps.
- `densenet_bc100_k12`, `densenet_bc250_k24`, `densenet_bc190_k40`: the CIFAR
  DenseNet-BC, (L - 4) / 6 bottleneck layers per block, a first 3x3
  convolution of 2k maps. The CIFAR networks (3x32x32, 10 classes; feature
  maps 32x32, 16x16, 8x8) are the paper's own small-input DenseNets, so this
  family registers no `_small` variants; they default to dropout 0.2 after
  every convolution but the first, the paper's setting for CIFAR without data
  augmentation, which is how cnnlab trains.

Deviations from the paper:
- Global average pooling is adaptive (the authors' code pools a fixed 8x8 or
  7x7), so other input sizes go through; the arithmetic at the paper's sizes
  is the same.
- The training recipes leave out the data augmentation (random crops and
  flips) the paper uses for ImageNet and C10+; see each recipe's note.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from cnnlab.data.preprocessing import CIFAR10, IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ACTIVATIONS,
    INIT_SCHEMES,
    NORMS,
    activation_class,
    init_weights_,
    make_norm,
)
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import Recipe


@dataclass(frozen=True)
class DenseNetConfig:
    """Choices that tell the DenseNet variants apart (defaults: DenseNet-121)."""

    block_config: tuple[int, ...] = (6, 12, 24, 16)  # layers in each dense block
    growth_rate: int = 32  # k: feature maps each layer adds
    bottleneck: bool = True  # "B": a 1x1 conv of bn_size * k maps before each 3x3 conv
    bn_size: int = 4  # bottleneck width as a multiple of k (the paper's 4k)
    compression: float = 0.5  # "C", theta: a transition keeps floor(theta * m) of m maps
    stem: str = "imagenet"  # imagenet: 7x7/2 conv, BN-ReLU, 3x3/2 max pool | cifar: 3x3 conv
    stem_channels: int | None = None  # maps of the first convolution; None: 2k
    dropout: float = 0.0  # after every convolution but the first (paper: 0.2 on C10/C100)
    norm: str = "batch"  # a make_norm kind, before every convolution but the first
    activation: str = "relu"  # an activation_class name
    init: str = "paper"  # paper (He et al., fan-out, as the authors' code) | an INIT_SCHEMES name


_STEMS = ("imagenet", "cifar")


class DenseLayer(nn.Sequential):
    """BN-act-1x1 conv (bn_size * k)-BN-act-3x3 conv (k), or BN-act-3x3 conv (k)."""

    def __init__(self, in_channels: int, cfg: DenseNetConfig) -> None:
        super().__init__()
        k, bias = cfg.growth_rate, cfg.norm == "none"
        act = activation_class(cfg.activation)
        channels = in_channels
        if cfg.bottleneck:
            self.add_module("norm1", make_norm(cfg.norm, channels))
            self.add_module("act1", act())
            self.add_module("conv1", nn.Conv2d(channels, cfg.bn_size * k, 1, bias=bias))
            self.add_module("drop1", _dropout(cfg.dropout))
            channels = cfg.bn_size * k
        self.add_module("norm2", make_norm(cfg.norm, channels))
        self.add_module("act2", act())
        self.add_module("conv2", nn.Conv2d(channels, k, 3, padding=1, bias=bias))
        self.add_module("drop2", _dropout(cfg.dropout))


class DenseBlock(nn.Sequential):
    """`num_layers` dense layers; each one's k maps are appended to its input."""

    def __init__(self, in_channels: int, num_layers: int, cfg: DenseNetConfig) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"layer{i + 1}", DenseLayer(in_channels + i * cfg.growth_rate, cfg))
        self.out_channels = in_channels + num_layers * cfg.growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)  # (N, m, H, W) -> (N, m + k, H, W)
        return x


class Transition(nn.Sequential):
    """BN-act-1x1 conv-(dropout)-2x2/2 average pool between two dense blocks."""

    def __init__(self, in_channels: int, out_channels: int, cfg: DenseNetConfig) -> None:
        super().__init__()
        self.add_module("norm", make_norm(cfg.norm, in_channels))
        self.add_module("act", activation_class(cfg.activation)())
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=cfg.norm == "none"))
        self.add_module("drop", _dropout(cfg.dropout))
        self.add_module("pool", nn.AvgPool2d(2, 2))


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class DenseNet(Classifier):
    """Stem -> (dense block -> transition) x (B - 1) -> dense block -> BN-act -> pool -> linear."""

    fixed_input_size = False

    def __init__(
        self,
        cfg: DenseNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        input_hw: tuple[int, int] = (224, 224),
    ) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, *input_hw))
        channels = cfg.stem_channels or 2 * cfg.growth_rate
        self.stem = self._stem(in_chans, channels)
        body = []
        for i, num_layers in enumerate(cfg.block_config, 1):
            block = DenseBlock(channels, num_layers, cfg)
            self.add_module(f"block{i}", block)
            body.append(f"block{i}")
            channels = block.out_channels
            if i < len(cfg.block_config):
                out = int(channels * cfg.compression)  # floor(theta * m)
                self.add_module(f"transition{i}", Transition(channels, out, cfg))
                body.append(f"transition{i}")
                channels = out
        self.final = nn.Sequential(
            make_norm(cfg.norm, channels), activation_class(cfg.activation)()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.stages = ("stem", *body, "final")
        self.num_features = channels
        self.output = nn.Linear(channels, num_classes)
        if cfg.init == "paper":
            _paper_init_(self)
        else:
            init_weights_(self, cfg.init)

    def _stem(self, in_chans: int, channels: int) -> nn.Sequential:
        bias = self.cfg.norm == "none"
        if self.cfg.stem == "cifar":
            return nn.Sequential(nn.Conv2d(in_chans, channels, 3, padding=1, bias=bias))
        return nn.Sequential(
            nn.Conv2d(in_chans, channels, 7, stride=2, padding=3, bias=bias),
            make_norm(self.cfg.norm, channels),
            activation_class(self.cfg.activation)(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # imagenet (N, C, 224, 224) -> (N, 2k, 56, 56); cifar: 32x32 kept
        for name in self.stages[1:-1]:
            # a block adds k maps per layer; a transition compresses the maps and halves H and W
            x = getattr(self, name)(x)
        x = self.final(x)  # BN-act, (N, F, H/32, W/32) on ImageNet, (N, F, H/4, W/4) on CIFAR
        return self.pool(x).flatten(1)  # -> (N, F, 1, 1) -> (N, F)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = nn.Linear(self.num_features, num_classes)

    def min_input_size(self) -> int:
        """The smallest square input whose last dense block still has a 1x1 feature map."""
        size = 1
        while self._final_size(size) < 1:
            size += 1
        return size

    def _final_size(self, size: int) -> int:
        if self.cfg.stem == "imagenet":
            size = (size - 1) // 2 + 1  # 7x7/2 conv, padding 3
            size = (size - 1) // 2 + 1  # 3x3/2 max pool, padding 1
        for _ in range(len(self.cfg.block_config) - 1):
            size //= 2  # 2x2/2 average pool of a transition
        return size

    def validate_input(self, shape: tuple[int, ...]) -> None:
        super().validate_input(shape)
        if min(shape[1:]) < (smallest := self.min_input_size()):
            raise CnnlabError(
                f"input size {shape[1]}x{shape[2]} does not fit: this model needs at least "
                f"{smallest}x{smallest}"
            )


@torch.no_grad()
def _paper_init_(model: nn.Module) -> None:
    """He et al. 2015 as in the authors' code: conv N(0, 2 / (k*k*out)), zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def _check_config(cfg: DenseNetConfig) -> None:
    choices = {
        "stem": _STEMS,
        "norm": NORMS,
        "activation": tuple(ACTIVATIONS),
        "init": ("paper", *INIT_SCHEMES),
    }
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(f"{name}={getattr(cfg, name)!r}: expected one of {allowed}")
    blocks = cfg.block_config
    if not blocks or not all(isinstance(n, int) and n >= 1 for n in blocks):
        raise CnnlabError(
            f"block_config={blocks!r}: expected a non-empty tuple of layer counts >= 1"
        )
    for name in ("growth_rate", "bn_size"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise CnnlabError(f"{name}={getattr(cfg, name)!r}: expected an integer >= 1")
    if cfg.stem_channels is not None and (
        not isinstance(cfg.stem_channels, int) or cfg.stem_channels < 1
    ):
        raise CnnlabError(f"stem_channels={cfg.stem_channels!r}: expected None or an integer >= 1")
    if not 0.0 < cfg.compression <= 1.0:
        raise CnnlabError(f"compression={cfg.compression}: expected theta in (0, 1]")
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout}: expected a probability in [0, 1)")


def cifar_blocks(depth: int, bottleneck: bool) -> tuple[int, int, int]:
    """Layers per block of the paper's CIFAR DenseNet of depth L: (L - 4) / 3, or / 6 with B."""
    per_layer = 6 if bottleneck else 3
    if (depth - 4) % per_layer:
        raise CnnlabError(f"depth={depth}: expected L - 4 divisible by {per_layer}")
    n = (depth - 4) // per_layer
    return (n, n, n)


IMAGENET_RECIPE = Recipe(
    preprocessing=IMAGENET,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    schedule="step",  # divided by 10 every 30 epochs: at epochs 30 and 60
    epochs=90,
    batch_size=256,
    note=(
        "Section 4.2: SGD with Nesterov momentum 0.9 without dampening, weight decay 1e-4, "
        "batch 256, 90 epochs, lr 0.1 divided by 10 at epochs 30 and 60 (the trainer's step "
        "schedule with step_size 30). The paper's ImageNet augmentation (random-sized crops, "
        "flips, colour and lighting jitter of fb.resnet.torch) is not applied."
    ),
)

CIFAR_RECIPE = Recipe(
    preprocessing=CIFAR10,  # Section 3: "we normalize the data using the channel means and stds"
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    schedule="multistep",  # divided by 10 at 50% and 75% of the epochs (150 and 225)
    epochs=300,
    batch_size=64,
    note=(
        "Section 4.2: SGD with Nesterov momentum 0.9, weight decay 1e-4, batch 64, 300 epochs, "
        "lr 0.1 divided by 10 at 50% and 75% of training. This is the paper's C10 setting "
        "(no augmentation, dropout 0.2, the variants' default); its C10+ runs add "
        "translation and flipping and use no dropout."
    ),
)


def _imagenet(
    depth: int, blocks: tuple[int, ...], published: tuple[PaperFigure, ...] = ()
) -> Variant:
    return Variant(
        DenseNetConfig(block_config=blocks),
        IMAGENET_RECIPE,
        f"DenseNet-{depth} (BC, k=32, blocks {'-'.join(map(str, blocks))}) for ImageNet",
        num_classes=1000,
        input_size=(3, 224, 224),
        published=published,
    )


def _cifar(depth: int, k: int, bc: bool, params: str) -> Variant:
    kind = "DenseNet-BC" if bc else "DenseNet"
    return Variant(
        DenseNetConfig(
            block_config=cifar_blocks(depth, bc),
            growth_rate=k,
            bottleneck=bc,
            compression=0.5 if bc else 1.0,
            stem="cifar",
            stem_channels=2 * k if bc else 16,
            dropout=0.2,
        ),
        CIFAR_RECIPE,
        f"{kind} (L={depth}, k={k}) for CIFAR, three dense blocks at 32x32, 16x16, 8x8",
        num_classes=10,
        input_size=(3, 32, 32),
        published=(
            PaperFigure("params", params, "Table 2", note="with the 10-way classifier of C10"),
        ),
    )


VARIANTS: dict[str, Variant] = {
    "densenet121": _imagenet(
        121,
        (6, 12, 24, 16),
        (
            PaperFigure(
                "params",
                "7,978,856",
                "Table 1 (count of the authors' released model)",
                note=(
                    "The paper plots DenseNet-121 at about 8M parameters (Figure 3) but does "
                    "not print the count; 7,978,856 is that of the authors' released model "
                    "and torchvision's."
                ),
            ),
        ),
    ),
    "densenet169": _imagenet(169, (6, 12, 32, 32)),
    "densenet201": _imagenet(201, (6, 12, 48, 32)),
    "densenet264": _imagenet(264, (6, 12, 64, 48)),
    "densenet40_k12": _cifar(40, 12, False, "1.0M"),
    "densenet100_k12": _cifar(100, 12, False, "7.0M"),
    "densenet100_k24": _cifar(100, 24, False, "27.2M"),
    "densenet_bc100_k12": _cifar(100, 12, True, "0.8M"),
    "densenet_bc250_k24": _cifar(250, 24, True, "15.3M"),
    "densenet_bc190_k40": _cifar(190, 40, True, "25.6M"),
}


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> DenseNet:
    """Build variant `name`; `overrides` replace fields of its DenseNetConfig."""
    variant = VARIANTS[name]
    cfg = replace(variant.config, **overrides)
    return DenseNet(
        cfg, num_classes=num_classes, in_chans=in_chans, input_hw=variant.input_size[1:]
    )
