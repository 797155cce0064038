"""AlexNet: Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", Advances in Neural Information Processing
Systems 25 (NIPS), 2012.

The network of Section 3 and Figure 2: five convolutional layers and three fully
connected ones, ReLU after every layer but the last (Section 3.1), local response
normalisation after the ReLU of conv1 and conv2 (Section 3.3), overlapping 3x3
max pooling with stride 2 after LRN1, LRN2 and conv5 (Section 3.4), dropout 0.5
on the units of the two hidden fully connected layers, that is on the outputs of
fc6 and fc7 (Section 4.2; Caffe's reference model does the same, torchvision's
drops the inputs of fc6 and fc7 instead), and the paper's initialisation
(Section 5). The paper trained it split over two GPUs: conv2,
conv4 and conv5 see only the kernel maps of their own GPU, conv3 and the fully
connected layers see both (Section 3.2, Figure 2). Here the two towers are one
network whose conv2, conv4 and conv5 are grouped convolutions with groups=2;
conv1, which both towers compute from the whole image, is an ordinary
convolution of 96 filters.

Input size: the text says 224x224x3, but an 11x11 filter at stride 4 yields
Figure 2's 55x55 maps only from a 227x227 input ((227 - 11) / 4 + 1 = 55; from
224 it would be 54.25). The variants use 227x227, as Caffe's reference model did.

Variants:
- `alexnet`: the 2012 network, two towers as groups=2, 227x227x3 input, 1000 classes.
- `alexnet_ungrouped`: the same network as one tower (every convolution groups=1).
- `alexnet_small`: for 32x32 inputs (CIFAR-10, MNIST padded to 32), cheap and batch-normed.

`alexnet_small` changes exactly this: conv1 is 48@5x5, stride 1, padding 2
(instead of 96@11x11, stride 4, no padding); the three 3x3/2 max pools are padded
by 1, so maps go 32 -> 16 -> 8 -> 4; the convolutions have half the filters
(48, 128, 192, 192, 128 instead of 96, 256, 384, 384, 256) in one tower
(groups=1); fc6 and fc7 have 512 units instead of 4096; batch norm follows the
ReLU of every convolution instead of LRN after conv1 and conv2; PyTorch's
default initialisation instead of N(0, 0.01) with unit biases. Dropout 0.5, the
kernel sizes of conv2 to conv5 and the layer order are kept (93.9M MACs).

Deviations from the paper:
- Dropout is an nn.Dropout layer, which scales the kept units by 2 while training
  and does nothing at test time; the paper drops without scaling and multiplies
  the outputs by 0.5 at test time. The two are equivalent in expectation.
- The two GPUs are emulated by grouped convolutions on one device; the result is
  the same network (same connections, same parameters).
- Training (see the recipe's note): per-channel mean/std instead of the mean
  image, no random 224x224 crops of 256x256 images and their mirror images, no
  PCA colour augmentation, no 10-crop testing, and the learning rate drops at
  fixed epochs instead of "when the validation error stopped improving".
"""

from __future__ import annotations

from collections.abc import Sequence
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
    conv2d,
    conv_output_size,
    init_weights_,
    make_norm,
)
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import SHORT_RECIPE_32, Recipe


@dataclass(frozen=True)
class AlexNetConfig:
    """Choices that tell the AlexNet variants apart."""

    stem: str = "imagenet"  # imagenet: conv1 11x11/4, unpadded pools | small: conv1 5x5/1 pad 2,
    #                         pools padded by 1 (for 32x32 inputs)
    widths: tuple[int, ...] = (96, 256, 384, 384, 256)  # filters of conv1 .. conv5
    fc_width: int = 4096  # units of fc6 and fc7
    groups: int = 2  # towers: conv2, conv4 and conv5 are grouped convolutions (2) or not (1)
    norm: str = "lrn"  # the normalisation after the ReLU of the convs in norm_at:
    #                    lrn (Section 3.3) | batch | layer | instance | group | none
    norm_at: tuple[int, ...] = (1, 2)  # which convolutions (1-5) the norm follows
    activation: str = "relu"  # every layer but the classifier
    dropout: float = 0.5  # on the outputs of fc6 and fc7 (Section 4.2)
    init: str = "paper"  # paper (Section 5) | a scheme of cnnlab.layers.init


# stem: (conv1 kernel, conv1 stride, conv1 padding, max-pool padding)
_STEMS = {"imagenet": (11, 4, 0, 0), "small": (5, 1, 2, 1)}
_NORMS = ("lrn", *NORMS)
_INITS = ("paper", *INIT_SCHEMES)
# Section 5: biases 1 in conv2, conv4, conv5 and the hidden fully connected layers, else 0
_UNIT_BIAS = ("conv2", "conv4", "conv5", "fc6", "fc7")


class AlexNet(Classifier):
    """conv1 -> pool1 -> conv2 -> pool2 -> conv3 -> conv4 -> conv5 -> pool5 -> fc6 -> fc7 -> fc8.

    Each `convK` is Conv2d + activation (+ the norm where `norm_at` puts it);
    `output` (fc8) is the dropout on fc7's units followed by the linear classifier.
    """

    stages = ("conv1", "conv2", "conv3", "conv4", "conv5")

    def __init__(
        self,
        cfg: AlexNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        image_size: tuple[int, int] = (227, 227),
    ) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, *image_size))
        self.num_features = cfg.fc_width
        self._act = activation_class(cfg.activation)
        kernel, stride, padding, pool_padding = _STEMS[cfg.stem]
        c1, c2, c3, c4, c5 = cfg.widths
        g = cfg.groups
        self.conv1 = self._conv_block(1, conv2d(in_chans, c1, kernel, stride, padding))
        self.pool1 = nn.MaxPool2d(3, 2, padding=pool_padding)
        self.conv2 = self._conv_block(2, conv2d(c1, c2, 5, padding=2, groups=g))
        self.pool2 = nn.MaxPool2d(3, 2, padding=pool_padding)
        self.conv3 = self._conv_block(3, conv2d(c2, c3, 3, padding=1))  # crosses the towers
        self.conv4 = self._conv_block(4, conv2d(c3, c4, 3, padding=1, groups=g))
        self.conv5 = self._conv_block(5, conv2d(c4, c5, 3, padding=1, groups=g))
        self.pool5 = nn.MaxPool2d(3, 2, padding=pool_padding)
        h, w = (_pool5_size(n, cfg.stem) for n in image_size)
        self.fc6 = nn.Sequential(nn.Linear(c5 * h * w, cfg.fc_width), self._act())
        self.fc7 = nn.Sequential(
            self._dropout(), nn.Linear(cfg.fc_width, cfg.fc_width), self._act()
        )
        self.output = self._classifier(num_classes)
        self._init(self)

    def _conv_block(self, index: int, conv: nn.Conv2d) -> nn.Sequential:
        layers: list[nn.Module] = [conv, self._act()]
        if index in self.cfg.norm_at and self.cfg.norm != "none":
            channels = conv.out_channels
            layers.append(
                LocalResponseNorm()
                if self.cfg.norm == "lrn"
                else make_norm(self.cfg.norm, channels)
            )
        return nn.Sequential(*layers)

    def _dropout(self) -> nn.Module:
        return nn.Dropout(self.cfg.dropout) if self.cfg.dropout > 0 else nn.Identity()

    def _classifier(self, num_classes: int) -> nn.Sequential:
        return nn.Sequential(self._dropout(), nn.Linear(self.cfg.fc_width, num_classes))

    @torch.no_grad()
    def _init(self, module: nn.Module) -> None:
        """Initialise `module` (the whole model, or a fresh classifier) by `cfg.init`."""
        if self.cfg.init != "paper":
            init_weights_(module, self.cfg.init)
            return
        for m in module.modules():  # Section 5: N(0, 0.01) weights, biases 0 ...
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        if module is not self:
            return  # a fresh classifier (fc8): biases 0
        for name in _UNIT_BIAS:  # ... except 1 in conv2, conv4, conv5, fc6 and fc7
            for m in getattr(self, name).modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.ones_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # shapes for the 227x227 stem with the paper's widths (small stem: 32 -> 32, 16, 8, 4)
        x = self.pool1(self.conv1(x))  # (N, 3, 227, 227) -> (N, 96, 55, 55) -> (N, 96, 27, 27)
        x = self.pool2(self.conv2(x))  # -> (N, 256, 27, 27) -> (N, 256, 13, 13)
        x = self.conv5(self.conv4(self.conv3(x)))  # -> (N, 384, 13, 13) x2 -> (N, 256, 13, 13)
        x = self.pool5(x).flatten(1)  # -> (N, 256, 6, 6) -> (N, 9216)
        return self.fc7(self.fc6(x))  # -> (N, 4096) -> (N, 4096)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = self._classifier(num_classes)
        self._init(self.output)


def _pool5_size(size: int, stem: str) -> int:
    """Side of the maps after pool5 for an input side of `size`."""
    kernel, stride, padding, pool_padding = _STEMS[stem]
    try:
        size = conv_output_size(size, kernel, stride, padding)  # conv1
        size = conv_output_size(size, 3, 2, pool_padding)  # pool1 (conv2 keeps the size)
        size = conv_output_size(size, 3, 2, pool_padding)  # pool2 (conv3-5 keep it)
        return conv_output_size(size, 3, 2, pool_padding)  # pool5
    except CnnlabError as e:
        raise CnnlabError(f"stem={stem!r} does not fit the input size: {e}") from None


def _is_int_tuple(value: object, length: int | None = None) -> bool:
    return (
        isinstance(value, Sequence)
        and (length is None or len(value) == length)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _check_config(cfg: AlexNetConfig) -> None:
    choices = {
        "stem": tuple(_STEMS),
        "norm": _NORMS,
        "activation": tuple(ACTIVATIONS),
        "init": _INITS,
        "groups": (1, 2),
    }
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(f"{name}={getattr(cfg, name)!r}: expected one of {allowed}")
    if not _is_int_tuple(cfg.widths, 5) or min(cfg.widths) < 1:
        raise CnnlabError(f"widths={cfg.widths!r}: expected 5 positive integers (conv1 .. conv5)")
    if not isinstance(cfg.fc_width, int) or cfg.fc_width < 1:
        raise CnnlabError(f"fc_width={cfg.fc_width!r}: expected a positive integer")
    if not _is_int_tuple(cfg.norm_at) or not set(cfg.norm_at) <= {1, 2, 3, 4, 5}:
        raise CnnlabError(f"norm_at={cfg.norm_at!r}: expected convolution numbers among 1-5")
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout}: expected a probability in [0, 1)")


_PAPER_RECIPE = Recipe(
    preprocessing=IMAGENET,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="multistep",
    milestones=(30, 60, 80),
    epochs=90,
    batch_size=128,
    note=(
        "Section 5: SGD, batch 128, momentum 0.9, weight decay 0.0005, learning rate 0.01 "
        "divided by 10 whenever the validation error stopped improving (three times), about "
        "90 passes; here the three drops are fixed at epochs 30, 60 and 80. The paper's data "
        "pipeline differs: it subtracts the mean image "
        "of 256x256 rescaled images (here per-channel mean/std), trains on random 224x224 "
        "crops and their mirror images with PCA colour augmentation (Section 4.1), and "
        "tests on 10 crops; none of these is done here."
    ),
)

# The lecture table's conventions for the single-tower network (a course lecture's table,
# not the 2012 paper, which prints neither parameter nor operation counts per layer).
_LECTURE = "course lecture table (AlexNet, one tower, 227x227)"

VARIANTS: dict[str, Variant] = {
    "alexnet": Variant(
        AlexNetConfig(),
        _PAPER_RECIPE,
        "AlexNet as in Krizhevsky et al. 2012: two towers (groups=2), LRN, dropout",
        num_classes=1000,
        input_size=(3, 227, 227),
        published=(
            PaperFigure(
                "params",
                "60,965,224",
                'Figure 2, counted (the abstract and Section 4 print "60 million")',
                note="exact count of Figure 2's two-tower network, biases included",
            ),
            PaperFigure(
                "macs",
                "724.4M",
                "Figure 2, counted (the paper prints no operation count)",
                note="multiply-adds of the convolutions and fully connected layers at 227x227",
            ),
        ),
    ),
    "alexnet_ungrouped": Variant(
        AlexNetConfig(groups=1),
        _PAPER_RECIPE,
        "AlexNet as one tower (no grouped convolutions), otherwise as in the paper",
        num_classes=1000,
        input_size=(3, 227, 227),
        published=(
            PaperFigure("params", "62,378,344", _LECTURE),
            PaperFigure("macs", "1.135G", _LECTURE),
            PaperFigure(
                "params_no_fc_bias",
                "62,369,152",
                _LECTURE,
                note="the lecture table counts every weight and the conv biases, no FC biases",
            ),
            PaperFigure("params_conv_share", "6%", _LECTURE),
            PaperFigure("params_fc_share", "94%", _LECTURE),
            PaperFigure("macs_conv_share", "95%", _LECTURE),
        ),
    ),
    "alexnet_small": Variant(
        AlexNetConfig(
            stem="small",
            widths=(48, 128, 192, 192, 128),
            fc_width=512,
            groups=1,
            norm="batch",
            norm_at=(1, 2, 3, 4, 5),
            init="default",
        ),
        SHORT_RECIPE_32,
        "AlexNet for 32x32: 5x5/1 stem, padded pools, half widths, 512-unit FCs, batch norm",
        num_classes=10,
        input_size=(3, 32, 32),
    ),
}


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> AlexNet:
    """Build variant `name`; `overrides` replace fields of its AlexNetConfig."""
    variant = VARIANTS[name]
    cfg = replace(variant.config, **overrides)
    return AlexNet(cfg, num_classes, in_chans, image_size=variant.input_size[1:])
