"""Building blocks, one operation per file."""

from cnnlab.layers.activation import ACTIVATIONS, activation_class, make_activation
from cnnlab.layers.channel_shuffle import ChannelShuffle, channel_shuffle
from cnnlab.layers.connection_table_conv import LENET5_C3_TABLE, ConnectionTableConv2d
from cnnlab.layers.conv import (
    DepthwiseSeparableConv2d,
    SameConv2d,
    conv2d,
    depthwise_conv2d,
    pointwise_conv2d,
)
from cnnlab.layers.conv_arithmetic import conv_output_size, effective_kernel, same_padding
from cnnlab.layers.init import INIT_SCHEMES, init_weights_
from cnnlab.layers.lecun_init import lecun_1998_init_
from cnnlab.layers.local_response_norm import LocalResponseNorm
from cnnlab.layers.norm import NORMS, make_norm
from cnnlab.layers.rbf_output import EuclideanRBF
from cnnlab.layers.scaled_tanh import ScaledTanh
from cnnlab.layers.trainable_subsampling import TrainableSubsampling

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "LENET5_C3_TABLE",
    "NORMS",
    "ChannelShuffle",
    "ConnectionTableConv2d",
    "DepthwiseSeparableConv2d",
    "EuclideanRBF",
    "LocalResponseNorm",
    "SameConv2d",
    "ScaledTanh",
    "TrainableSubsampling",
    "activation_class",
    "channel_shuffle",
    "conv2d",
    "conv_output_size",
    "depthwise_conv2d",
    "effective_kernel",
    "init_weights_",
    "lecun_1998_init_",
    "make_activation",
    "make_norm",
    "pointwise_conv2d",
    "same_padding",
]
