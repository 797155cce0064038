"""A model's default training recipe: what `cnnlab train MODEL` uses for every
setting the command line leaves out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cnnlab.data.preprocessing import MNIST_32, Preprocessing


@dataclass(frozen=True)
class Recipe:
    """Preprocessing, optimiser, schedule and length of a training run.

    `note` says where the recipe departs from the paper it comes from.
    """

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "cosine"  # constant | step | multistep | cosine | onecycle | lenet1998
    milestones: tuple[int, ...] = ()  # multistep: epochs at which the rate drops
    gamma: float = 0.1  # step and multistep: the factor at each drop
    step_size: int = 30  # step: epochs between drops
    epochs: int = 10
    batch_size: int = 128
    loss: str = "cross_entropy"  # cross_entropy | mse | rbf_map
    # the paper's augmentation of training batches, cnnlab.data.augment's specs
    augment: tuple[str, ...] = ()
    # the datasets that augmentation was written for (empty: any); on other data it stays
    # off unless asked for, since a flip or crop can change what a digit is
    augment_for: tuple[str, ...] = ()
    # channels_last memory format: on only where benchmarks/speed_options.py measured it faster
    channels_last: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# The zoo's short recipe for its 32x32 variants of ImageNet networks, trained on MNIST padded
# to 32x32: a family takes it whole or with `dataclasses.replace` (its own rate, say).
SHORT_RECIPE_32 = Recipe(
    preprocessing=MNIST_32,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    schedule="onecycle",
    epochs=15,
    batch_size=128,
    note="Not from the paper: the zoo's short recipe for 32x32 inputs (one cycle, 15 epochs).",
)
