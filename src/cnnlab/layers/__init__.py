"""Building blocks, one operation per file."""

from cnnlab.layers.connection_table_conv import LENET5_C3_TABLE, ConnectionTableConv2d
from cnnlab.layers.lecun_init import lecun_1998_init_
from cnnlab.layers.rbf_output import EuclideanRBF
from cnnlab.layers.scaled_tanh import ScaledTanh
from cnnlab.layers.trainable_subsampling import TrainableSubsampling

__all__ = [
    "LENET5_C3_TABLE",
    "ConnectionTableConv2d",
    "EuclideanRBF",
    "ScaledTanh",
    "TrainableSubsampling",
    "lecun_1998_init_",
]
