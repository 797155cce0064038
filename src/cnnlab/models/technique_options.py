"""The generic technique options (`--norm`, `--act`, `--init`, `--dropout`) mapped onto
each family's config, in one place.

Every family has a place for each technique, but names it and supports values of its
own: LeNet-5 has batch norm or none, three activations and two initialisations; AlexNet's
normalisation includes local response normalisation (Krizhevsky et al. 2012, Section
3.3); GoogLeNet keeps its LRN (Szegedy et al. 2015, Figure 3) in a separate switch, so
`--norm lrn` there means norm=none with LRN on, and any other `--norm` replaces the LRN;
`--init paper` is the family's own paper initialisation where it has one. A value a
family does not support is a one-line error naming the model, the option and what the
family supports. `PLACES` must name every registered family (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.layers import ACTIVATIONS, INIT_SCHEMES, NORMS

TECHNIQUE_OPTIONS = ("norm", "act", "init", "dropout")


@dataclass(frozen=True)
class Place:
    """Where a family keeps one technique: its config field and the values it supports."""

    field: str
    values: tuple[str, ...] = ()  # () for a probability in [0, 1)
    lrn_switch: str = ""  # GoogLeNet: the boolean field that carries LRN beside `field`

    def overrides(self, value: Any) -> dict[str, Any]:
        """The config fields `value` sets."""
        if self.lrn_switch:
            return {
                self.field: "none" if value == "lrn" else value,
                self.lrn_switch: value == "lrn",
            }
        return {self.field: value}


_NORM = Place("norm", NORMS)
_ACT = Place("activation", tuple(ACTIVATIONS))
_INIT = Place("init", INIT_SCHEMES)
_PAPER_INIT = Place("init", ("paper", *INIT_SCHEMES))
_DROPOUT = Place("dropout")
_STANDARD = {"norm": _NORM, "act": _ACT, "init": _INIT, "dropout": _DROPOUT}

# family module name -> option -> place
PLACES: dict[str, dict[str, Place]] = {
    "lenet": {
        "norm": Place("norm", ("none", "batch")),
        "act": Place("activation", ("scaled_tanh", "tanh", "relu")),
        "init": Place("init", ("lecun1998", "default")),
        "dropout": _DROPOUT,
    },
    "alexnet": {**_STANDARD, "norm": Place("norm", ("lrn", *NORMS)), "init": _PAPER_INIT},
    "vgg": {**_STANDARD, "init": _PAPER_INIT},
    "convnet": _STANDARD,
    "googlenet": {**_STANDARD, "norm": Place("norm", ("lrn", *NORMS), lrn_switch="lrn")},
    "resnet": {**_STANDARD, "init": _PAPER_INIT},
    "densenet": {**_STANDARD, "init": _PAPER_INIT},
    "mobilenet": _STANDARD,
    "shufflenet": _STANDARD,
}


def technique_overrides(model: str, family: str, **options: Any) -> dict[str, Any]:
    """Config overrides of `model` (of `family`) for options among TECHNIQUE_OPTIONS.

    technique_overrides("resnet20", "resnet", norm="group", act="silu")
    -> {"norm": "group", "activation": "silu"}. None values are skipped.
    """
    out: dict[str, Any] = {}
    for option, value in options.items():
        if value is None:
            continue
        if option not in TECHNIQUE_OPTIONS:
            raise CnnlabError(
                f"unknown technique option {option!r}: expected one of {TECHNIQUE_OPTIONS}"
            )
        place = PLACES.get(family, {}).get(option)
        if place is None:
            raise CnnlabError(f"--{option}: {model} ({family}) has no place for it")
        if not place.values:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CnnlabError(f"--{option} {value!r}: expected a probability in [0, 1)")
            if not 0.0 <= value < 1.0:
                raise CnnlabError(f"--{option} {value}: expected a probability in [0, 1)")
        elif value not in place.values:
            raise CnnlabError(
                f"--{option} {value}: {model} ({family}) supports {'|'.join(place.values)}"
            )
        out.update(place.overrides(value))
    return out
