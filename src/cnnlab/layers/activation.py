"""Activation functions by name, for the models' `activation` option."""

from __future__ import annotations

from functools import partial

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers.scaled_tanh import ScaledTanh

ACTIVATIONS: dict[str, type[nn.Module] | partial] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "scaled_tanh": ScaledTanh,  # LeCun et al. 1998: 1.7159 tanh(2a/3)
    "relu": nn.ReLU,  # Nair and Hinton 2010; Krizhevsky et al. 2012
    "relu6": nn.ReLU6,
    "leaky_relu": partial(nn.LeakyReLU, 0.01),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def activation_class(name: str) -> type[nn.Module] | partial:
    """A zero-argument constructor of activation `name`."""
    if name not in ACTIVATIONS:
        raise CnnlabError(f"unknown activation {name!r}: expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def make_activation(name: str) -> nn.Module:
    return activation_class(name)()
