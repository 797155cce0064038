"""VGG: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", ICLR 2015 (arXiv 1409.1556).

Variants (`VARIANTS`), the columns of Table 1 on a 224x224x3 input, every
convolution 3x3 (stride 1, padding 1) unless named 1x1, five 2x2/2 max pools,
ReLU after every weight layer, FC-4096, FC-4096 (each followed by dropout 0.5),
FC-1000:
- `vgg11`: configuration A, 8 convolutions + 3 FC layers (11 weight layers).
- `vgg11_lrn`: A-LRN, configuration A with Krizhevsky et al.'s local response
  normalisation (k=2, n=5, alpha=1e-4, beta=0.75) after the first convolution.
- `vgg13`: configuration B, 10 convolutions.
- `vgg16_1x1`: configuration C, B plus a 1x1 convolution at the end of each of
  the last three blocks.
- `vgg16`: configuration D, B plus a third 3x3 convolution in the last three blocks.
- `vgg19`: configuration E, B plus a third and fourth 3x3 convolution in the last
  three blocks.
- `vgg11_bn`, `vgg11_lrn_bn`, `vgg13_bn`, `vgg16_1x1_bn`, `vgg16_bn`, `vgg19_bn`:
  the same with batch normalisation between every convolution and its ReLU
  (not in the paper), which lets every depth start from the paper's random
  initialisation.
- `vgg11_bn_small`, `vgg16_bn_small`: `vgg11_bn` and `vgg16_bn` for 32x32 inputs
  and 10 classes. The convolutions are unchanged; the five pools bring 32x32 to
  1x1, so the classifier reads 512 features instead of 25,088, and its hidden
  layers are 512 wide instead of 4096 (FC-512, FC-512, FC-10); PyTorch's default
  initialisation, which trains fastest here.

Deviations from the paper:
- Initialisation of B-E: the paper trains A from random weights, then starts the
  deeper configurations from A's first four convolutions and last three FC layers
  (the rest random). Here B-E are drawn afresh with Glorot and Bengio's
  initialisation (`xavier_uniform`), which the paper reports (Section 3.1) to
  work without that pre-training. A and A-LRN use the paper's own scheme
  (`init="paper"`): weights drawn from a normal distribution of standard
  deviation 0.01, biases zero. The paper prints "zero mean and 10^-2 variance",
  i.e. standard deviation 0.1; taken literally, that gives configuration A
  logits of standard deviation about 2e6 at initialisation on normalised inputs
  (2e-5 at 0.01), so it is read as a standard deviation of 10^-2, as Caffe's
  "gaussian std 0.01" filler and most reimplementations read it.
- Training and testing (see the recipes' note): no scale jittering,
  multi-scale training, RGB colour shift, dense (fully convolutional) or
  multi-crop evaluation; the learning-rate drops are at fixed epochs, not on
  plateaus of the validation accuracy.
- The batch-norm and small variants are additions, not configurations of the paper.
"""

from __future__ import annotations

import re
from collections import OrderedDict
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

# Table 1, the convolutional part of each configuration: one tuple per block
# (the blocks are separated by the five max pools), in the paper's notation
# "conv<receptive field size>-<number of channels>". The FC part (FC-4096,
# FC-4096, FC-1000, soft-max) is common to all.
_TWO_3x3 = (("conv3-64",) * 2, ("conv3-128",) * 2)
TABLE_1: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": (
        ("conv3-64",),
        ("conv3-128",),
        ("conv3-256",) * 2,
        ("conv3-512",) * 2,
        ("conv3-512",) * 2,
    ),
    "A-LRN": (
        ("conv3-64", "LRN"),
        ("conv3-128",),
        ("conv3-256",) * 2,
        ("conv3-512",) * 2,
        ("conv3-512",) * 2,
    ),
    "B": (*_TWO_3x3, ("conv3-256",) * 2, ("conv3-512",) * 2, ("conv3-512",) * 2),
    "C": (
        *_TWO_3x3,
        ("conv3-256", "conv3-256", "conv1-256"),
        ("conv3-512", "conv3-512", "conv1-512"),
        ("conv3-512", "conv3-512", "conv1-512"),
    ),
    "D": (*_TWO_3x3, ("conv3-256",) * 3, ("conv3-512",) * 3, ("conv3-512",) * 3),
    "E": (*_TWO_3x3, ("conv3-256",) * 4, ("conv3-512",) * 4, ("conv3-512",) * 4),
}
_CONV = re.compile(r"conv(\d+)-(\d+)")

# Section 3.1: "we sampled the weights from a normal distribution with the zero
# mean and 10^-2 variance. The biases were initialised with zero." Read as a
# standard deviation of 10^-2 (see the module docstring).
PAPER_INIT_STD = 0.01


@dataclass(frozen=True)
class VGGConfig:
    """Choices that tell the VGG variants apart."""

    configuration: str = "D"  # a column of Table 1: A | A-LRN | B | C | D | E
    norm: str = "none"  # after every convolution, before its activation: a make_norm kind
    activation: str = "relu"  # after every convolution and hidden FC layer
    dropout: float = 0.5  # after each of the two hidden FC layers (0: none)
    fc_width: int = 4096  # width of the two hidden FC layers
    init: str = "paper"  # paper (normal weights, std 0.01; zero biases) | a layers.init scheme


_CHOICES = {
    "configuration": tuple(TABLE_1),
    "norm": NORMS,
    "activation": tuple(ACTIVATIONS),
    "init": ("paper", *INIT_SCHEMES),
}


def _check_config(cfg: VGGConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(
                f"{name}={getattr(cfg, name)!r}: expected one of {', '.join(allowed)}"
            )
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout}: expected a probability in [0, 1)")
    if not isinstance(cfg.fc_width, int) or cfg.fc_width < 1:
        raise CnnlabError(f"fc_width={cfg.fc_width!r}: expected a positive integer")


@torch.no_grad()
def vgg_paper_init_(model: nn.Module) -> None:
    """Section 3.1: every weight from a normal distribution, std 0.01; biases zero."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, PAPER_INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _weight_layer(cls: type[nn.Module], *args: int, **kwargs: int) -> nn.Module:
    """A convolution or linear layer left uninitialised: `_initialise` sets it, once.

    (PyTorch's own initialisation of the 100M weights of fc1-fc2 takes a second
    and would be overwritten.)
    """
    return torch.nn.utils.skip_init(cls, *args, **kwargs)


def _initialise(module: nn.Module, scheme: str) -> None:
    """Initialise every weight layer of `module` by `scheme` ("default": PyTorch's own)."""
    if scheme == "paper":
        vgg_paper_init_(module)
    elif scheme == "default":
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
    else:
        init_weights_(module, scheme)


def _conv_unit(cin: int, cout: int, kernel: int, cfg: VGGConfig) -> nn.Sequential:
    """conv (stride 1, padded to keep the size) -> [norm] -> activation."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = _weight_layer(nn.Conv2d, cin, cout, kernel, stride=1, padding=kernel // 2)
    if cfg.norm != "none":
        layers["norm"] = make_norm(cfg.norm, cout)
    layers["act"] = activation_class(cfg.activation)()
    return nn.Sequential(layers)


def make_block(cin: int, spec: tuple[str, ...], cfg: VGGConfig) -> tuple[nn.Sequential, int]:
    """One block of Table 1 (the layers between two max pools); returns it and its width."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for entry in spec:
        if entry == "LRN":  # after the ReLU, as in Krizhevsky et al. 2012
            layers["lrn"] = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
            continue
        kernel, cout = map(int, _CONV.fullmatch(entry).groups())
        layers[f"conv{len(layers) + 1}"] = _conv_unit(cin, cout, kernel, cfg)
        cin = cout
    return nn.Sequential(layers), cin


class VGG(Classifier):
    """Five blocks of convolutions, each followed by a 2x2/2 max pool, then three FC layers."""

    stages = ("block1", "block2", "block3", "block4", "block5")

    def __init__(
        self,
        cfg: VGGConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        image_size: tuple[int, int] = (224, 224),
    ) -> None:
        _check_config(cfg)
        h, w = image_size
        if h < 32 or w < 32:
            raise CnnlabError(f"image size {h}x{w}: VGG's five pools need at least 32x32")
        super().__init__(cfg, num_classes, (in_chans, h, w))
        self.num_features = cfg.fc_width
        channels = in_chans
        for i, spec in enumerate(TABLE_1[cfg.configuration], start=1):
            block, channels = make_block(channels, spec, cfg)
            self.add_module(f"block{i}", block)
            self.add_module(f"pool{i}", nn.MaxPool2d(kernel_size=2, stride=2))
        flat = channels * (h // 32) * (w // 32)  # 512 x 7 x 7 = 25,088 at 224x224
        self.fc1 = self._hidden_fc(flat)
        self.fc2 = self._hidden_fc(cfg.fc_width)
        self.output = _weight_layer(nn.Linear, cfg.fc_width, num_classes)
        _initialise(self, cfg.init)

    def _hidden_fc(self, fan_in: int) -> nn.Sequential:
        layers = [
            _weight_layer(nn.Linear, fan_in, self.cfg.fc_width),
            activation_class(self.cfg.activation)(),
        ]
        if self.cfg.dropout > 0:
            layers.append(nn.Dropout(self.cfg.dropout))
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # sizes for a 224x224 input (a 32x32 one ends at 1x1)
        x = self.pool1(self.block1(x))  # (N, C, 224, 224) -> (N, 64, 224, ...) -> (N, 64, 112, 112)
        x = self.pool2(self.block2(x))  # -> (N, 128, 112, 112) -> (N, 128, 56, 56)
        x = self.pool3(self.block3(x))  # -> (N, 256, 56, 56) -> (N, 256, 28, 28)
        x = self.pool4(self.block4(x))  # -> (N, 512, 28, 28) -> (N, 512, 14, 14)
        x = self.pool5(self.block5(x))  # -> (N, 512, 14, 14) -> (N, 512, 7, 7)
        x = x.flatten(1)  # -> (N, 25088)
        return self.fc2(self.fc1(x))  # -> (N, 4096) -> (N, 4096)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = _weight_layer(nn.Linear, self.cfg.fc_width, num_classes)
        _initialise(self.output, self.cfg.init)


def _paper_recipe(configuration: str, batch_norm: bool) -> Recipe:
    if batch_norm:
        init = (
            "Batch normalisation is not in the paper; with it every configuration starts "
            "from the paper's random initialisation (normal, std 0.01), no pre-training"
        )
    elif configuration in ("A", "A-LRN"):
        init = "All layers are drawn at random (normal, std 0.01), as the paper does for A"
    else:
        init = (
            "All layers are drawn at random with Glorot's initialisation, which the paper "
            "reports to work as well; the paper itself started B-E from a trained net A (its "
            "first four convolutions and last three FC layers)"
        )
    return Recipe(
        preprocessing=IMAGENET,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="multistep",
        milestones=(30, 50, 65),
        epochs=74,
        batch_size=256,
        note=(
            "Section 3.1: mini-batch SGD, batch 256, momentum 0.9, weight decay 5e-4, "
            "dropout 0.5 on the first two FC layers, learning rate 0.01 divided by 10 each "
            "time the validation accuracy stopped improving (three times), stopped after "
            "370K iterations (74 epochs). Here the three drops are fixed at epochs 30, 50 "
            "and 65 (our choice; the paper gives no epochs). Inputs are normalised by the "
            "ImageNet mean and standard deviation, at 224x224; the paper subtracts the mean "
            "RGB value only and trains on random 224x224 crops of images rescaled to a "
            "training scale S (fixed 256 or 384, or jittered in [256, 512]), with random "
            "horizontal flips and Krizhevsky's RGB colour shift, and tests densely (fully "
            f"convolutional) at several scales and on multiple crops. {init}."
        ),
    )


# name: (Table 1 column, Table 2's printed parameter count, description)
_PAPER_NETS = {
    "vgg11": ("A", "133M", "VGG configuration A: 8 conv 3x3 + 3 FC (11 weight layers)"),
    "vgg11_lrn": ("A-LRN", "133M", "VGG configuration A-LRN: A with LRN after the first conv"),
    "vgg13": ("B", "133M", "VGG configuration B: 10 conv 3x3 + 3 FC (13 weight layers)"),
    "vgg16_1x1": ("C", "134M", "VGG configuration C: 10 conv 3x3 + 3 conv 1x1 + 3 FC"),
    "vgg16": ("D", "138M", "VGG configuration D: 13 conv 3x3 + 3 FC (16 weight layers)"),
    "vgg19": ("E", "144M", "VGG configuration E: 16 conv 3x3 + 3 FC (19 weight layers)"),
}
_TABLE_2 = "Table 2 (number of parameters, in millions)"


def _paper_variants() -> dict[str, Variant]:
    variants = {}
    for name, (column, printed, description) in _PAPER_NETS.items():
        init = "paper" if column in ("A", "A-LRN") else "xavier_uniform"
        published = [PaperFigure("params", printed, _TABLE_2)]
        if name == "vgg16":
            published.append(
                PaperFigure(
                    "params",
                    "138,357,544",
                    "Table 2 prints 138M; the exact count is torchvision's for vgg16",
                    note="configuration D, biases included, 1000 classes",
                )
            )
        variants[name] = Variant(
            VGGConfig(configuration=column, init=init),
            _paper_recipe(column, batch_norm=False),
            description,
            num_classes=1000,
            input_size=(3, 224, 224),
            published=tuple(published),
        )
        variants[f"{name}_bn"] = Variant(
            VGGConfig(configuration=column, norm="batch", init="paper"),
            _paper_recipe(column, batch_norm=True),
            f"{description}, batch norm after every conv",
            num_classes=1000,
            input_size=(3, 224, 224),
        )
    return variants


VARIANTS: dict[str, Variant] = {
    **_paper_variants(),
    "vgg11_bn_small": Variant(
        VGGConfig(configuration="A", norm="batch", fc_width=512, init="default"),
        SHORT_RECIPE_32,
        "VGG configuration A with batch norm for 32x32 inputs: FC-512, FC-512, FC-10",
        num_classes=10,
        input_size=(3, 32, 32),
    ),
    "vgg16_bn_small": Variant(
        VGGConfig(configuration="D", norm="batch", fc_width=512, init="default"),
        SHORT_RECIPE_32,
        "VGG configuration D with batch norm for 32x32 inputs: FC-512, FC-512, FC-10",
        num_classes=10,
        input_size=(3, 32, 32),
    ),
}


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> VGG:
    """Build variant `name`; `overrides` replace fields of its VGGConfig."""
    cfg = replace(VARIANTS[name].config, **overrides)
    _, h, w = VARIANTS[name].input_size
    return VGG(cfg, num_classes=num_classes, in_chans=in_chans, image_size=(h, w))
