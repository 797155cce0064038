"""`normalization`: batch normalisation permits much higher learning rates and converges
faster (Ioffe and Szegedy 2015), set beside layer (Ba et al. 2016), instance (Ulyanov et
al. 2016), group (Wu and He 2018) and local response normalisation (Krizhevsky et al. 2012).

One network for all six: plain20 (cnnlab.models.resnet: He et al.'s CIFAR stack without
shortcuts) with one block per stage, "plain-8": a 3x3 convolution of 16 maps, two of 16,
two of 32 (the first at stride 2), two of 64 (the first at stride 2), global average
pooling and one fully connected layer, He initialised. Every convolution is followed by
its `norm` (a layers.make_norm kind), before the ReLU, where Ioffe and Szegedy put batch
norm: like batch-normalised Inception, everything but the classifier is normalised. LRN
is added to the `norm="none"` network where AlexNet has it, after the ReLU of the first
two convolutions. Nothing else differs between the six.

Each network is trained on MNIST (28x28, normalised by its mean and standard deviation)
by SGD with momentum 0.9 at a constant learning rate, for every rate of a geometric sweep
from the lowest up, by the short loop below (no run directory: the sweep is many short
runs, and the LRN network is not a registered configuration). A rate *trains* when every
step's loss is finite and the last epoch's training error (measured on the fly) is below
TRAINS_BELOW. The sweep of a normalisation stops at a rate whose loss became non-finite,
or that failed above one that trained. The lowest rate is the common rate at which the
training error per epoch shows the convergence.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import BatchLoader
from cnnlab.data.preprocessing import MNIST_32, Preprocessing
from cnnlab.data.sources import load_dataset
from cnnlab.device import resolve_device
from cnnlab.experiments.experiment import Experiment, Outcome
from cnnlab.experiments.parts import FinishedParts
from cnnlab.layers import LocalResponseNorm, make_norm
from cnnlab.registry import create_model
from cnnlab.training.metrics import ClassificationMeter
from cnnlab.training.optimizers import create_optimizer
from cnnlab.viz.save import save_figure

log = logging.getLogger(__name__)

MODEL = "plain20"
NETWORK = {"layers": (1, 1, 1), "init": "paper", "dropout": 0.0}  # overrides of plain20
WIDTHS = (16, 16, 32, 64)  # the stem's and each stage's maps (plain20's widths)
NORMS = ("none", "batch", "layer", "instance", "group", "lrn")
MNIST = Preprocessing(mode="meanstd", mean=MNIST_32.mean, std=MNIST_32.std)  # 28x28, unpadded
MOMENTUM = 0.9
TRAINS_BELOW = 0.5  # the last epoch's training error (chance: 90%)


@dataclass(frozen=True)
class Budget:
    limit_train: int | None  # None: all 60,000 digits
    epochs: int
    batch_size: int
    rates: tuple[float, ...]  # ascending; the first is the common rate


BUDGETS = {
    "small": Budget(1_000, epochs=5, batch_size=32, rates=(0.03, 0.1, 0.3, 1.0, 3.0)),
    "paper": Budget(
        None, epochs=3, batch_size=32, rates=tuple(round(0.01 * 2**k, 2) for k in range(10))
    ),  # rates 0.01, 0.02, 0.04, ..., 5.12
}


@dataclass(frozen=True)
class Run:
    """One training run: the training error of each epoch it finished, and whether every
    step's loss was finite (a run stops at the first that is not)."""

    errors: tuple[float, ...]
    finite: bool

    def trains(self, epochs: int) -> bool:
        return self.finite and len(self.errors) == epochs and self.errors[-1] < TRAINS_BELOW


def build(norm: str, seed: int = 0) -> nn.Module:
    """plain-8 for MNIST with `norm` after every convolution, before its ReLU; "lrn": after
    the ReLU of the first two convolutions."""
    torch.manual_seed(seed)
    kind = "none" if norm == "lrn" else norm
    model = create_model(MODEL, num_classes=10, in_chans=1, norm=kind, **NETWORK)
    if norm == "lrn":  # Krizhevsky et al.'s Section 3.3: after conv1's and conv2's ReLU
        model.stem.append(LocalResponseNorm())
        first = model.layer1[0]
        first.act1 = nn.Sequential(first.act1, LocalResponseNorm())
    return model


def train(model: nn.Module, data: ImageDataset, lr: float, budget: Budget, seed: int = 0) -> Run:
    """SGD at the constant rate `lr`; the training error of each epoch, on the fly."""
    device = next(model.parameters()).device
    loader = BatchLoader(data, budget.batch_size, MNIST, shuffle=True, seed=seed, device=device)
    optimizer = create_optimizer("sgd", model.parameters(), lr, MOMENTUM)
    model.train()
    errors = []
    for epoch in range(budget.epochs):
        loader.set_epoch(epoch)
        meter = ClassificationMeter(10, device)
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                return Run(tuple(errors), finite=False)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.update(logits, y)
        errors.append(meter.top1_error)
    return Run(tuple(errors), finite=True)


def sweep(norm: str, data: ImageDataset, budget: Budget, device: torch.device,
          parts: FinishedParts) -> dict[float, Run]:  # fmt: skip
    """The runs of `norm` from the lowest rate up, until one diverges or fails above a rate
    that trained; each is a part of the experiment (read back if an earlier run did it)."""
    runs: dict[float, Run] = {}
    for lr in budget.rates:
        saved = parts.get(
            f"{norm} at lr {lr:g}",
            lambda lr=lr: asdict(train(build(norm).to(device), data, lr, budget)),
        )
        runs[lr] = Run(tuple(saved["errors"]), saved["finite"])
        log.info("normalization: %s at lr %g: %s", norm, lr, _cell(runs[lr], budget.epochs))
        trained_below = any(r.trains(budget.epochs) for r in runs.values())
        if not runs[lr].finite or (trained_below and not runs[lr].trains(budget.epochs)):
            break
    return runs


def highest_rate(runs: dict[float, Run], epochs: int) -> float | None:
    """The highest learning rate of a sweep that trains, None if none does."""
    return max((lr for lr, run in runs.items() if run.trains(epochs)), default=None)


def _cell(run: Run | None, epochs: int) -> str:
    if run is None:
        return "-"
    if not run.finite:
        return "diverged"
    return f"{run.errors[-1]:.2%}" + ("" if run.trains(epochs) else " (no)")


def run(out: Path, budget_name: str) -> Outcome:
    budget = BUDGETS[budget_name]
    train_set, _ = load_dataset("mnist")
    if budget.limit_train is not None:
        train_set = train_set.subset(slice(0, budget.limit_train))
    device = resolve_device("auto")
    parts = FinishedParts(out, budget)
    sweeps = {norm: sweep(norm, train_set, budget, device, parts) for norm in NORMS}
    common, top, epochs = budget.rates[0], budget.rates[-1], budget.epochs
    highest = {norm: highest_rate(runs, epochs) for norm, runs in sweeps.items()}
    curves = {norm: sweeps[norm][common] for norm in NORMS}
    mean = {n: statistics.mean(r.errors) for n, r in curves.items() if r.trains(epochs)}
    save_figure(_figure(curves, sweeps, common), out / "normalization.png")

    def limit(norm: str) -> str:
        rate = highest[norm]
        return "none" if rate is None else f"{'≥ ' if rate == top else ''}{rate:g}"

    digits = f"the first {len(train_set):,}" if budget.limit_train else f"all {len(train_set):,}"
    lines = [
        f"plain-8 ({MODEL} with one block per stage, {WIDTHS[1:]} maps), the normalisation "
        f"before the ReLU of every convolution, He initialisation; SGD with momentum "
        f"{MOMENTUM:g} at a constant rate, batch {budget.batch_size}, {epochs} epochs on "
        f"{digits} MNIST training digits. Training error measured on the fly, in training "
        "mode, over each epoch's batches.",
        "",
        f"Convergence at the common learning rate {common:g}: the training error of each "
        "epoch and their mean (lower: faster):",
        "",
        "| normalisation | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " | mean |",
        "|---|" + "---:|" * (epochs + 1),
        *[
            f"| {norm} | "
            + " | ".join(
                f"{r.errors[e]:.2%}" if e < len(r.errors) else "diverged" for e in range(epochs)
            )
            + f" | {f'{mean[norm]:.2%}' if norm in mean else '-'} |"
            for norm, r in curves.items()
        ],
        "",
        "Learning-rate sweep: the last epoch's training error at each rate. A rate trains when "
        f"every step's loss is finite and that error is below {TRAINS_BELOW:.0%} (chance: "
        '90%); "(no)" marks a finite run above it, "diverged" a non-finite loss, "-" a rate '
        "not tried (the sweep stops at a divergence or at a failure above a rate that "
        'trained), "≥" a limit at or above the sweep\'s highest rate:',
        "",
        "| normalisation | "
        + " | ".join(f"lr {lr:g}" for lr in budget.rates)
        + " | highest rate that trains |",
        "|---|" + "---:|" * (len(budget.rates) + 1),
        *[
            f"| {norm} | "
            + " | ".join(_cell(runs.get(lr), epochs) for lr in budget.rates)
            + f" | {limit(norm)} |"
            for norm, runs in sweeps.items()
        ],
    ]
    return Outcome(
        verdict=f"{_rate_verdict(highest, top)}; {_convergence_verdict(mean, common, epochs)}",
        findings=lines,
        against_the_source=[
            "- Ioffe and Szegedy trained their batch-normalised Inception at 5 and 30 times "
            "the baseline's learning rate (BN-x5, BN-x30); BN-x5 reached the baseline's 72.2% "
            "ImageNet accuracy in 14 times fewer steps (Section 4.2.2, Figure 3). They also "
            "removed dropout and LRN, weakened weight decay and sped up the decay of the rate "
            "(Section 4.2.1), which this experiment does not. Here the question is narrower: "
            "on one small network and a few epochs of MNIST, how high can a constant rate go "
            "before training fails, and how fast does the training error fall at a rate all "
            "can use.",
            "- Group norm uses Wu and He's 32 groups (or the largest divisor of the channels "
            f"below it): at {WIDTHS} maps a group holds {_group_sizes()} channels, so in "
            "this narrow network it is almost instance norm. Their comparison (ResNet-50 on "
            "ImageNet, groups of 2 to 64 channels) found group norm about as good as batch "
            "norm at typical batch sizes and better than layer and instance norm.",
            "- LRN (Krizhevsky et al.'s k=2, n=5, alpha=1e-4, beta=0.75) is where AlexNet has "
            "it, after the ReLU of the first two convolutions, in the network without other "
            "normalisation. At small activations it divides by about 2^0.75 = 1.7 and "
            "normalises little else; in every place of the other norms that factor would "
            "compound over seven layers.",
            "- One seed per run: a rate at the edge of training can fail or pass by chance, "
            "so limits one step apart are not a clear difference.",
        ],
        figures=[
            (
                "training error per epoch at the common rate, and the last epoch's training "
                "error across the learning-rate sweep",
                "normalization.png",
            )
        ],
        earlier_seconds=parts.reused_seconds,
    )


def _group_sizes() -> str:
    """The channels per group of each group norm in the network, as "1 to 2"."""
    sizes = sorted({c // make_norm("group", c).num_groups for c in WIDTHS})
    return f"{sizes[0]} to {sizes[-1]}" if len(sizes) > 1 else f"{sizes[0]}"


def _rate_verdict(highest: dict[str, float | None], top: float) -> str:
    batch, none = highest["batch"], highest["none"]
    if batch is None:
        return "batch norm trained at no rate of the sweep"
    at_least = "at least " if batch == top else ""
    if none is None:
        return f"batch norm trained up to {at_least}{batch:g}, no rate without normalisation"
    relation = "higher than" if batch > none else "the same as" if batch == none else "lower than"
    return (
        f"the highest learning rate that trained was {at_least}{batch:g} with batch norm, "
        f"{relation} without normalisation ({none:g})"
    )


def _convergence_verdict(mean: dict[str, float], common: float, epochs: int) -> str:
    if "batch" not in mean or "none" not in mean:
        return f"at the common rate {common:g} not both trained"
    faster = "faster" if mean["batch"] < mean["none"] else "not faster"
    return (
        f"at {common:g} batch norm converged {faster} (mean training error over {epochs} "
        f"epochs {mean['batch']:.2%} against {mean['none']:.2%})"
    )


def _figure(curves: dict[str, Run], sweeps: dict[str, dict[float, Run]], common: float) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, norm in enumerate(NORMS):
        errors = curves[norm].errors
        left.plot(range(1, len(errors) + 1), [100 * e for e in errors], "o-", color=f"C{i}",
                  label=norm)  # fmt: skip
        finite = [(lr, r.errors[-1]) for lr, r in sweeps[norm].items() if r.finite]
        right.plot([lr for lr, _ in finite], [100 * e for _, e in finite], "o-", color=f"C{i}",
                   label=norm)  # fmt: skip
        failed = [lr for lr, r in sweeps[norm].items() if not r.finite]
        right.plot(failed, [100] * len(failed), "x", color=f"C{i}", markersize=9)
    left.set(xlabel="epoch", ylabel="training error (%)", yscale="log",
             title=f"convergence at learning rate {common:g}")  # fmt: skip
    right.axhline(100 * TRAINS_BELOW, color="#888888", linestyle="--", linewidth=0.8)
    right.set(xlabel="learning rate", ylabel="last epoch's training error (%)", xscale="log",
              yscale="log", title="learning-rate sweep (x: loss not finite)")  # fmt: skip
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="normalization",
    claim="batch normalisation permits much higher learning rates and converges faster; "
    "beside it layer, instance, group and local response normalisation",
    source="Ioffe and Szegedy 2015, 'Batch normalization', ICML, Sections 3.3 and 4.2; Ba et "
    "al. 2016 (layer); Ulyanov et al. 2016 (instance); Wu and He 2018 (group); Krizhevsky et "
    "al. 2012, Section 3.3 (LRN)",
    run=run,
    budgets={
        name: f"MNIST, {f'{b.limit_train:,}' if b.limit_train else 'all 60,000'} training "
        f"digits, {b.epochs} epochs, batch {b.batch_size}, rates "
        f"{', '.join(f'{lr:g}' for lr in b.rates)}, one seed"
        for name, b in BUDGETS.items()
    },
    continues=True,
)
