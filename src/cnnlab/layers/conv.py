"""The convolutions of the course, each a configured nn.Conv2d (or a pair of them).

- valid: no padding; same: output = ceil(input / stride), for any stride
  (PyTorch's padding="same" allows stride 1 only, so larger strides pad
  explicitly, asymmetrically where needed); strided; dilated (Yu and Koltun
  2016); grouped (Krizhevsky et al. 2012's two towers); 1x1 (Lin et al. 2014,
  "Network in Network"); depthwise (groups = channels); depthwise-separable
  (a depthwise then a 1x1 pointwise convolution, Howard et al. 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers.conv_arithmetic import same_padding


class SameConv2d(nn.Conv2d):
    """A convolution padded so that output = ceil(input / stride) at any stride."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, padding=0, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = same_padding(x.shape[-2], kh, sh, dh)
        left, right = same_padding(x.shape[-1], kw, sw, dw)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: str | int = "valid",
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """A convolution with `padding` "valid", "same" or a number of pixels per side."""
    if in_channels % groups or out_channels % groups:
        raise CnnlabError(
            f"groups={groups} must divide both in_channels={in_channels} "
            f"and out_channels={out_channels}"
        )
    common = dict(stride=stride, dilation=dilation, groups=groups, bias=bias)
    if padding == "same":
        if stride == 1:
            return nn.Conv2d(in_channels, out_channels, kernel_size, padding="same", **common)
        return SameConv2d(in_channels, out_channels, kernel_size, **common)
    if padding == "valid":
        padding = 0
    if not isinstance(padding, int) or padding < 0:
        raise CnnlabError(f"padding={padding!r}: expected 'valid', 'same' or pixels >= 0")
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, **common)


def depthwise_conv2d(
    channels: int, kernel_size: int = 3, stride: int = 1, padding: str | int = "same", bias=True
) -> nn.Conv2d:
    """One filter per input channel (groups = channels)."""
    return conv2d(channels, channels, kernel_size, stride, padding, groups=channels, bias=bias)


def pointwise_conv2d(in_channels: int, out_channels: int, groups: int = 1, bias=True) -> nn.Conv2d:
    """A 1x1 convolution: a fully connected layer applied at every position."""
    return conv2d(in_channels, out_channels, 1, groups=groups, bias=bias)


class DepthwiseSeparableConv2d(nn.Sequential):
    """Depthwise k x k then pointwise 1x1, each optionally followed by a norm and an
    activation (Howard et al. 2017, Fig. 3); costs k*k*C + C*C' per position
    instead of k*k*C*C'."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: str | int = "same",
        norm: type[nn.Module] | None = None,
        activation: type[nn.Module] | None = None,
    ) -> None:
        bias = norm is None

        def after(channels: int) -> list[nn.Module]:
            layers = [norm(channels)] if norm is not None else []
            return layers + ([activation()] if activation is not None else [])

        super().__init__(
            depthwise_conv2d(in_channels, kernel_size, stride, padding, bias=bias),
            *after(in_channels),
            pointwise_conv2d(in_channels, out_channels, bias=bias),
            *after(out_channels),
        )
