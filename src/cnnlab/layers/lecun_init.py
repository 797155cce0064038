"""LeCun et al. 1998's weight initialisation, Appendix A.

"The weights were initialized with random values uniformly distributed between
-2.4/F_i and 2.4/F_i, where F_i is the number of inputs (fan-in) of the unit."
Biases are trainable weights of the unit too and are drawn the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.layers.connection_table_conv import ConnectionTableConv2d
from cnnlab.layers.trainable_subsampling import TrainableSubsampling


def _uniform(tensor: torch.Tensor, fan_in: int) -> None:
    bound = 2.4 / fan_in
    nn.init.uniform_(tensor, -bound, bound)


@torch.no_grad()
def lecun_1998_init_(model: nn.Module) -> None:
    """Initialise every convolution, linear and subsampling layer of `model` in place."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            _uniform(module.weight, fan_in)
            if module.bias is not None:
                _uniform(module.bias, fan_in)
        elif isinstance(module, ConnectionTableConv2d):
            for weight in module.weights:
                _uniform(weight, weight[0].numel())
            for o in range(module.out_channels):
                _uniform(module.bias[o : o + 1], module.fan_in(o))
        elif isinstance(module, TrainableSubsampling):
            _uniform(module.coefficient, module.fan_in)
            _uniform(module.bias, module.fan_in)
