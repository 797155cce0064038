"""Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto and Adam, "MobileNets:
Efficient Convolutional Neural Networks for Mobile Vision Applications",
arXiv:1704.04861, 2017.

Variants:
- `mobilenet_v1`: the network of Table 1 (a 3x3 convolution of stride 2 with 32
  filters, 13 depthwise-separable layers -- 3x3 depthwise conv, batch norm,
  ReLU, 1x1 pointwise conv, batch norm, ReLU, Fig. 3 -- global average pooling
  and a fully connected layer), for 3x224x224 ImageNet images. The width
  multiplier alpha (`width_mult`: channels = int(alpha * c) in every layer) and
  the resolution multiplier (`resolution`: the input side, 224, 192, 160 or 128)
  of Section 3.3-3.4 are options.
- `mobilenet_v1_small`: for 32x32 inputs (CIFAR-10, MNIST padded to 32) at
  width 0.5: the first convolution (conv1) and the last stride-2 depthwise
  layer (sep12, Table 1's "Conv dw / s2" on 512 channels) have stride 1
  instead of 2, so the network downsamples by 8 instead of 32: feature maps
  of 32 (conv1, sep1), 16 (sep2-3), 8 (sep4-5) and 4 (sep6-13) instead of 112,
  56, 28, 14 and 7; everything else as `mobilenet_v1`.

Deviations from the paper:
- Padding: one pixel of zeros on every side of each 3x3 convolution; the
  paper's TensorFlow "SAME" padding pads the strided ones at the bottom and
  right only. Feature-map sizes, parameters and multiply-adds are the same.
- Table 1's next-to-last depthwise layer is printed "Conv dw / s2" but maps
  7x7 to 7x7; it has stride 1 here, as in the TensorFlow-slim release of the model.
- Initialisation: the paper states none; Kaiming normal (fan out) by default.
- Training: RMSprop with asynchronous gradient descent, whose settings the
  paper does not give, is replaced by SGD with momentum (see the recipe's note);
  weight decay is applied to every parameter, depthwise filters included, where
  the paper puts "very little or no" decay on those.
"""

from __future__ import annotations

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
    activation_class,
    depthwise_conv2d,
    init_weights_,
    make_norm,
    pointwise_conv2d,
)
from cnnlab.layers import conv2d as make_conv2d
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import SHORT_RECIPE_32, Recipe

# Table 1, one row per layer: (output channels, stride). Row 0 is the full 3x3
# convolution; rows 1-13 are depthwise-separable layers (the depthwise conv has the
# stride, the pointwise conv sets the channels). Row 13's stride is 1, see above.
TABLE_1: tuple[tuple[int, int], ...] = (
    (32, 2),
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
PAPER_STRIDES = tuple(stride for _, stride in TABLE_1)
SMALL_STRIDES = (1, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1)  # rows 0 and 12 at stride 1


@dataclass(frozen=True)
class MobileNetConfig:
    """Choices that tell the MobileNet v1 variants apart."""

    width_mult: float = 1.0  # alpha of Section 3.3: every layer has int(alpha * c) channels
    resolution: int = 224  # input side (Section 3.4's rho * 224): 224, 192, 160, 128, ...
    strides: tuple[int, ...] = PAPER_STRIDES  # stride of each of Table 1's 14 layers (1 or 2)
    norm: str = "batch"  # after every convolution: batch (the paper) | layer | ... | none
    activation: str = "relu"  # after every normalisation (the paper: ReLU)
    dropout: float = 0.0  # before the fully connected layer (the paper mentions none)
    init: str = "kaiming_normal_fan_out"  # a scheme of cnnlab.layers.init (paper: unstated)


def _conv_norm_act(
    conv: nn.Conv2d, channels: int, norm: str, activation: str
) -> OrderedDict[str, nn.Module]:
    return OrderedDict(
        conv=conv, norm=make_norm(norm, channels), act=activation_class(activation)()
    )


class ConvNormAct(nn.Sequential):
    """Table 1's first layer: a full 3x3 convolution, normalisation, activation."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, norm: str, activation: str
    ) -> None:
        conv = make_conv2d(in_channels, out_channels, 3, stride, padding=1, bias=norm == "none")
        super().__init__(_conv_norm_act(conv, out_channels, norm, activation))


class DepthwiseSeparable(nn.Sequential):
    """Fig. 3, right: 3x3 depthwise conv, norm, activation, 1x1 pointwise conv, norm,
    activation. Convolutions have biases only when there is no normalisation."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, norm: str, activation: str
    ) -> None:
        bias = norm == "none"
        dw = depthwise_conv2d(in_channels, 3, stride, padding=1, bias=bias)
        pw = pointwise_conv2d(in_channels, out_channels, bias=bias)
        dw_part = _conv_norm_act(dw, in_channels, norm, activation)
        pw_part = _conv_norm_act(pw, out_channels, norm, activation)
        super().__init__(
            OrderedDict(
                [(f"dw_{k}" if k != "conv" else "depthwise", m) for k, m in dw_part.items()]
                + [(f"pw_{k}" if k != "conv" else "pointwise", m) for k, m in pw_part.items()]
            )
        )


def scaled_width(channels: int, width_mult: float) -> int:
    """Section 3.3: a layer of `channels` has int(alpha * channels) at width multiplier alpha."""
    return int(width_mult * channels)


class MobileNetV1(Classifier):
    """conv1 -> sep1 ... sep13 -> global average pool -> (dropout) -> fc (Table 1)."""

    fixed_input_size = False

    def __init__(self, cfg: MobileNetConfig, num_classes: int = 1000, in_chans: int = 3) -> None:
        _check_config(cfg)
        super().__init__(cfg, num_classes, (in_chans, cfg.resolution, cfg.resolution))
        widths = [scaled_width(c, cfg.width_mult) for c, _ in TABLE_1]
        strides = tuple(cfg.strides)
        self.conv1 = ConvNormAct(in_chans, widths[0], strides[0], cfg.norm, cfg.activation)
        for i in range(1, len(TABLE_1)):
            block = DepthwiseSeparable(
                widths[i - 1], widths[i], strides[i], cfg.norm, cfg.activation
            )
            self.add_module(f"sep{i}", block)
        self.stages = ("conv1", *(f"sep{i}" for i in range(1, len(TABLE_1))))
        self.pool = nn.AdaptiveAvgPool2d(1)  # Table 1's "Avg Pool 7x7" at 224
        self.num_features = widths[-1]
        self.output = self._classifier(num_classes)
        init_weights_(self, cfg.init)

    def _classifier(self, num_classes: int) -> nn.Sequential:
        dropout = nn.Dropout(self.cfg.dropout) if self.cfg.dropout > 0 else nn.Identity()
        return nn.Sequential(
            OrderedDict(dropout=dropout, fc=nn.Linear(self.num_features, num_classes))
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, 224, 224) -> conv1 (N, 32a, 112, 112) -> sep1 (N, 64a, 112, 112)
        # -> sep2-3 (N, 128a, 56, 56) -> sep4-5 (N, 256a, 28, 28)
        # -> sep6-11 (N, 512a, 14, 14) -> sep12-13 (N, 1024a, 7, 7)  [a = alpha, at 224]
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.pool(x).flatten(1)  # -> (N, 1024a, 1, 1) -> (N, 1024a)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = self._classifier(num_classes)
        init_weights_(self.output, self.cfg.init)


def _check_config(cfg: MobileNetConfig) -> None:
    choices = {"norm": NORMS, "activation": tuple(ACTIVATIONS), "init": INIT_SCHEMES}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise CnnlabError(f"{name}={getattr(cfg, name)!r}: expected one of {allowed}")
    alpha = cfg.width_mult
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha * 32 < 1:
        raise CnnlabError(
            f"width_mult={alpha!r}: expected a number >= 1/32 (the paper: 1.0, 0.75, 0.5, 0.25)"
        )
    res = cfg.resolution
    if isinstance(res, bool) or not isinstance(res, int) or res < 1:
        raise CnnlabError(
            f"resolution={res!r}: expected a positive integer (the paper: 224, 192, 160, 128)"
        )
    strides = cfg.strides
    if (
        not isinstance(strides, (tuple, list))
        or len(strides) != len(TABLE_1)
        or any(s not in (1, 2) or isinstance(s, bool) for s in strides)
    ):
        raise CnnlabError(
            f"strides={strides!r}: expected {len(TABLE_1)} strides of 1 or 2, "
            f"one per layer of Table 1, like {list(PAPER_STRIDES)}"
        )
    if not 0.0 <= cfg.dropout < 1.0:
        raise CnnlabError(f"dropout={cfg.dropout}: expected a probability in [0, 1)")


_TABLE_6_NOTE = (
    "Multiply-adds of every convolution and of the fully connected layer (the classifier's "
    "1.0M counted: without it 1.0/224 would be 568M), rounded to the nearest million. "
    "Parameters: every trainable parameter, batch norm included; the paper counts weights "
    "only (see Table 2), and the difference (0.5%) does not change a printed digit."
)
_TABLE_7_NOTE = (
    "Multiply-adds as in Table 6, FC layer included. Our exact counts are 418.1M, 290.7M "
    "and 186.4M; only truncation gives all three printed figures (290.7M would round to "
    "291M). The printed figures are consistent with the paper scaling its 224 count, "
    "568.7M, by the resolution multiplier squared (Section 3.4; 417.9M, 290.2M, 185.7M "
    "rounded), which wrongly scales the FC layer's 1.0M too. The table's own 224 row, "
    "569M, is attached under Table 6: truncated it would read 568M."
)
_TABLE_2_NOTE = (
    "Share of the 1x1 convolutions in the multiply-adds of all convolutions and the fully "
    "connected layer (FC included, as in Table 6)."
)


def _table_6(alpha: float, macs: str, params: str) -> tuple[PaperFigure, PaperFigure]:
    overrides = {} if alpha == 1.0 else {"width_mult": alpha}
    return (
        PaperFigure("macs", macs, "Table 6", overrides=overrides, note=_TABLE_6_NOTE),
        PaperFigure("params", params, "Table 6", overrides=overrides, note=_TABLE_6_NOTE),
    )


def _table_7(resolution: int, macs: str) -> PaperFigure:
    return PaperFigure(
        "macs",
        macs,
        "Table 7",
        overrides={"resolution": resolution},
        input_size=(3, resolution, resolution),
        rounding="down",
        note=_TABLE_7_NOTE,
    )


IMAGENET_RECIPE = Recipe(
    preprocessing=IMAGENET,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=4e-5,
    schedule="cosine",
    epochs=150,
    batch_size=256,
    note=(
        "The paper trains with RMSprop and asynchronous gradient descent 'similar to "
        "Inception V3', with little regularisation and data augmentation, and gives no "
        "rate, batch size or length; Recipe has no RMSprop. Here: synchronous SGD with "
        "momentum 0.9, rate 0.1 for batches of 256 with a cosine decay over 150 epochs, "
        "and weight decay 4e-5 (the TensorFlow-slim release's value) on every "
        "parameter: the paper puts very little or no decay on the depthwise filters, "
        "which Recipe cannot single out."
    ),
)

VARIANTS: dict[str, Variant] = {
    "mobilenet_v1": Variant(
        MobileNetConfig(),
        IMAGENET_RECIPE,
        "MobileNet v1 (Table 1): 13 depthwise-separable layers, width and resolution options",
        num_classes=1000,
        input_size=(3, 224, 224),
        published=(
            *_table_6(1.0, "569M", "4.2M"),
            *_table_6(0.75, "325M", "2.6M"),
            *_table_6(0.5, "149M", "1.3M"),
            *_table_6(0.25, "41M", "0.5M"),
            _table_7(192, "418M"),
            _table_7(160, "290M"),
            _table_7(128, "186M"),
            PaperFigure("macs_1x1_share", "94.86%", "Table 2", note=_TABLE_2_NOTE),
            PaperFigure(
                "weights_1x1_share",
                "74.59%",
                "Table 2",
                note="the parameter column counts weights only: with batch norm and the FC "
                "bias (params_1x1_share) the 1x1 share is 74.19%",
            ),
        ),
    ),
    "mobilenet_v1_small": Variant(
        MobileNetConfig(width_mult=0.5, resolution=32, strides=SMALL_STRIDES),
        replace(SHORT_RECIPE_32, lr=0.1),
        "MobileNet v1 at width 0.5 for 32x32 inputs: conv1 and sep12 at stride 1",
        num_classes=10,
        input_size=(3, 32, 32),
    ),
}


def build(name: str, num_classes: int, in_chans: int, **overrides: object) -> MobileNetV1:
    """Build variant `name`; `overrides` replace fields of its MobileNetConfig."""
    cfg = replace(VARIANTS[name].config, **overrides)
    return MobileNetV1(cfg, num_classes=num_classes, in_chans=in_chans)
