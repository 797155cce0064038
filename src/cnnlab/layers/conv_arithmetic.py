"""The size arithmetic of convolution and pooling: output = floor((W - F + 2P) / S) + 1.

With dilation D the filter spans F' = D (F - 1) + 1 inputs. Frameworks floor
the division and silently drop the last rows when a filter "doesn't fit";
`conv_output_size(..., strict=True)` says so instead, as the course's exercise
(a 3x3 filter with stride 3 on a 7x7 input) expects. `same_padding` gives the
padding, split as TensorFlow splits it, that makes output = ceil(W / S) for any
stride.
"""

from __future__ import annotations

import math

from cnnlab.errors import CnnlabError


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """The number of inputs a dilated filter spans along one axis."""
    return dilation * (kernel - 1) + 1


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    strict: bool = False,
) -> int:
    """Output length along one axis; `strict` refuses a stride that leaves inputs over."""
    if min(size, kernel, stride, dilation) < 1 or padding < 0:
        raise CnnlabError(
            f"size={size}, kernel={kernel}, stride={stride}, padding={padding}, "
            f"dilation={dilation}: sizes must be positive and padding non-negative"
        )
    span = effective_kernel(kernel, dilation)
    padded = size + 2 * padding
    if padded < span:
        raise CnnlabError(
            f"a {kernel}x{kernel} filter (spanning {span}) does not fit a {size}x{size} input "
            f"with padding {padding}: the padded input is only {padded} wide"
        )
    if strict and (padded - span) % stride:
        exact = (padded - span) / stride + 1
        raise CnnlabError(
            f"a {kernel}x{kernel} filter with stride {stride} does not fit a {size}x{size} input "
            f"with padding {padding}: ({size} - {span} + 2*{padding})/{stride} + 1 = {exact:.2f} "
            "is not an integer"
        )
    return (padded - span) // stride + 1


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding giving ceil(size / stride) outputs; the odd one goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - size, 0)
    return total // 2, total - total // 2
