"""Every experiment by name, in the order `cnnlab experiment --list` shows them."""

from __future__ import annotations

from difflib import get_close_matches

from cnnlab.errors import CnnlabError
from cnnlab.experiments import (
    bottleneck,
    depth,
    dropout,
    grid_vs_random,
    nas,
    normalization,
    relu_vs_tanh,
    residual_vs_plain,
    transfer,
)
from cnnlab.experiments.experiment import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        dropout.EXPERIMENT,
        grid_vs_random.EXPERIMENT,
        bottleneck.EXPERIMENT,
        transfer.EXPERIMENT,
        nas.EXPERIMENT,
        relu_vs_tanh.EXPERIMENT,
        residual_vs_plain.EXPERIMENT,
        normalization.EXPERIMENT,
        depth.EXPERIMENT,
    )
}


def get_experiment(name: str) -> Experiment:
    """The experiment `name`, or a one-line error that lists them."""
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    close = get_close_matches(name, EXPERIMENTS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CnnlabError(
        f"unknown experiment {name!r}: expected one of {', '.join(EXPERIMENTS)}{hint}"
    )
