"""Weight initialisation schemes by name.

- lecun_uniform / lecun_normal: variance 1/fan_in (LeCun et al. 1998, "Efficient
  BackProp"); lecun1998: the paper's U(-2.4/F, 2.4/F), see lecun_init.py.
- xavier_uniform / xavier_normal (alias glorot_*): variance 2/(fan_in + fan_out),
  Glorot and Bengio 2010.
- kaiming_normal / kaiming_uniform (alias he_*): variance 2/fan_in for ReLU,
  He et al. 2015 ("Delving deep into rectifiers"); kaiming_normal_fan_out keeps
  the backward variance instead, as ResNet implementations do.
- normal_0.01: N(0, 0.01^2) weights, zero biases (Krizhevsky et al. 2012; also
  Simonyan and Zisserman 2015, whose "10^-2 variance" is read, as their Caffe
  models were, as a standard deviation of 0.01).
- default: leave PyTorch's own initialisation.

Convolution and linear layers are initialised; biases are set to zero (except
lecun1998, which draws them too). Normalisation layers keep weight 1, bias 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers.lecun_init import lecun_1998_init_


def _lecun_uniform(w: torch.Tensor) -> None:
    bound = math.sqrt(3.0 / nn.init._calculate_fan_in_and_fan_out(w)[0])
    nn.init.uniform_(w, -bound, bound)


def _lecun_normal(w: torch.Tensor) -> None:
    nn.init.normal_(w, 0.0, math.sqrt(1.0 / nn.init._calculate_fan_in_and_fan_out(w)[0]))


WEIGHT_INITS: dict[str, Callable[[torch.Tensor], object]] = {
    "lecun_uniform": _lecun_uniform,
    "lecun_normal": _lecun_normal,
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "kaiming_normal_fan_out": lambda w: nn.init.kaiming_normal_(
        w, mode="fan_out", nonlinearity="relu"
    ),
    "normal_0.01": lambda w: nn.init.normal_(w, 0.0, 0.01),
}
ALIASES = {
    "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal",
    "he_uniform": "kaiming_uniform",
    "he_normal": "kaiming_normal",
}
INIT_SCHEMES = (*WEIGHT_INITS, *ALIASES, "lecun1998", "default")


@torch.no_grad()
def init_weights_(model: nn.Module, scheme: str) -> None:
    """Initialise every convolution and linear layer of `model` in place by `scheme`."""
    scheme = ALIASES.get(scheme, scheme)
    if scheme == "default":
        return
    if scheme == "lecun1998":
        lecun_1998_init_(model)
        return
    if scheme not in WEIGHT_INITS:
        raise CnnlabError(
            f"unknown initialisation {scheme!r}: expected one of {', '.join(INIT_SCHEMES)}"
        )
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            WEIGHT_INITS[scheme](module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
