"""`nas`: a searched architecture can beat a hand-designed one at the same cost (Zoph and
Le 2017; the lectures).

A small neural architecture search over `convnet` (cnnlab.models.convnet): Optuna's TPE
sampler, on two objectives (the validation error and the multiply-adds), proposes the number
of stages, each stage's width and kernel size, the convolutions per stage, the downsampling
(max or average pooling, or a strided convolution), the normalisation and the head; each
proposal trains briefly with convnet's recipe (lenet5_modern's: Adam, one-cycle) on a slice
of the training set, a tenth of it held out for validation. lenet5 and lenet5_modern, each
with its own recipe, train on the same images for as many epochs. Then the searched network
with the lowest validation error among those with no more multiply-adds than lenet5_modern
trains again beside lenet5_modern with fresh seeds, and both are tested on test images the
search never saw: the verdict is that comparison.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure
from optuna.trial import TrialState

from cnnlab.analysis.paper import measure
from cnnlab.atomic_file import write_text_atomically
from cnnlab.data.sources import describe_source, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.experiments.experiment import Experiment, Outcome
from cnnlab.registry import create_model, get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer
from cnnlab.viz.save import save_figure

FAMILY = "convnet"
BASELINES = ("lenet5", "lenet5_modern")
REFERENCE = "lenet5_modern"  # the hand design of the verdict
SEARCH_SEED = 0  # the sampler's and every search run's (so all share one validation split)
MAX_DRAWS = 1000  # proposals drawn for one trial before the space counts as too expensive
# the space beside each budget's widths, kernels and convolutions per stage
STAGES = (1, 3)  # 1 to 3 stages: 32 -> 16 -> 8 -> 4
DOWNSAMPLE = ("max", "avg", "stride")
NORMS = ("none", "batch", "group")
HEADS = ("avg", "flatten")
HIDDEN = (0, 64)  # none, or one hidden fully connected layer of 64 units
DATA_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}


@dataclass(frozen=True)
class Budget:
    data: str
    limit_train: int  # the first N training images; a tenth held out for the search
    epochs: int  # every run's, search and confirmation alike
    trials: int  # networks the search trains
    startup: int  # the first ones drawn at random, the rest by TPE
    max_macs: int  # proposals above this are not trained but drawn again
    widths: tuple[int, ...]  # choices of each stage's width
    kernels: tuple[int, ...]  # choices of each stage's kernel size
    convs: tuple[int, ...]  # choices of convolutions per stage
    search_test: int  # test images each search run scores too (never used to choose)
    limit_test: int | None  # test images of the confirmation runs (None: all 10,000)
    seeds: tuple[int, ...]  # the confirmation runs' seeds


BUDGETS = {
    "small": Budget(
        "mnist", 3_000, epochs=3, trials=12, startup=8, max_macs=3_000_000,
        widths=(4, 8, 16, 32), kernels=(3, 5), convs=(1,), search_test=500, limit_test=2_000,
        seeds=(1, 2),
    ),
    "paper": Budget(
        "cifar10", 10_000, epochs=10, trials=40, startup=12, max_macs=20_000_000,
        widths=(8, 16, 32, 64), kernels=(1, 3, 5, 7), convs=(1, 2), search_test=1_000,
        limit_test=None, seeds=(1, 2, 3),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Trained:
    """A network the search phase trained, with its costs and validation error."""

    name: str  # "trial 3", or the baseline's model name
    model: str
    model_args: dict[str, Any]
    macs: int  # multiply-adds for one image
    params: int
    val_error: float
    seconds: float


def propose(trial: optuna.Trial, budget: Budget) -> dict[str, Any]:
    """One architecture of the space, as convnet's model_args."""
    stages = range(1, trial.suggest_int("stages", *STAGES) + 1)
    widths = [trial.suggest_categorical(f"width{i}", budget.widths) for i in stages]
    kernels = [trial.suggest_categorical(f"kernel{i}", budget.kernels) for i in stages]
    hidden = trial.suggest_categorical("hidden", HIDDEN)
    return {
        "widths": widths,
        "kernels": kernels,
        "convs": trial.suggest_categorical("convs", budget.convs),
        "downsample": trial.suggest_categorical("downsample", DOWNSAMPLE),
        "norm": trial.suggest_categorical("norm", NORMS),
        "head": trial.suggest_categorical("head", HEADS),
        "hidden": [hidden] if hidden else [],
    }


def describe(args: dict[str, Any]) -> str:
    """convnet's model_args in VGG's notation: 'conv5-8, conv3-16; max pool; batch norm; ...'."""
    repeat = f"{args['convs']}x " if args["convs"] > 1 else ""
    stages = zip(args["widths"], args["kernels"], strict=True)
    convs = ", ".join(f"{repeat}conv{k}-{w}" for w, k in stages)
    down = "strided conv" if args["downsample"] == "stride" else f"{args['downsample']} pool"
    norm = "no norm" if args["norm"] == "none" else f"{args['norm']} norm"
    fcs = [f"fc-{h}" for h in args["hidden"]]
    return "; ".join([convs, down, norm, f"{args['head']} head", *fcs])


def train_command(args: dict[str, Any], data: str) -> str:
    """The `cnnlab train` command line of convnet with `args` (lists as JSON)."""
    words = ["cnnlab", "train", FAMILY, "--data", data, "--dataset-stats"]
    for key, value in args.items():
        text = json.dumps(value, separators=(",", ":")) if isinstance(value, list) else value
        words += ["--model-arg", f"{key}={text}"]
    return shlex.join(words)


def pareto_front(points: list[Trained]) -> list[Trained]:
    """The networks that no other matches or beats on both multiply-adds and validation
    error, one of them strictly, by multiply-adds; of equal points the first only."""

    def dominates(q: Trained, p: Trained) -> bool:
        a, b = (q.macs, q.val_error), (p.macs, p.val_error)
        return a[0] <= b[0] and a[1] <= b[1] and a != b

    front = [p for p in points if not any(dominates(q, p) for q in points)]
    first = {(p.macs, p.val_error): p for p in reversed(front)}  # reversed: the first wins
    return sorted(first.values(), key=lambda p: p.macs)


def _costs(model: str, args: dict[str, Any], channels: int) -> tuple[int, int]:
    """(multiply-adds, parameters) of one image at the model's own input size."""
    _, h, w = get_spec(model).input_size
    numbers = measure(create_model(model, in_chans=channels, **args), (channels, h, w))
    return int(numbers["macs"]), int(numbers["params"])


def _train(run_dir: Path, model: str, args: dict[str, Any], budget: Budget, seed: int,
           search: bool) -> float:  # fmt: skip
    """One run; the final validation error (search) or test error (confirmation)."""
    cfg = TrainConfig.from_recipe(
        model, get_spec(model).recipe, data=budget.data, epochs=budget.epochs,
        limit_train=budget.limit_train, val_split=budget.limit_train // 10 if search else 0,
        limit_test=budget.search_test if search else budget.limit_test, model_args=args,
        dataset_stats=True, seed=seed, quiet=True, out=str(run_dir),
    )  # fmt: skip
    result = Trainer(cfg, run_dir, f"cnnlab experiment nas: {run_dir.name}").fit()
    return result.final["val_top1_error" if search else "test_top1_error"]


@dataclass(frozen=True)
class Proposal:
    """An architecture the search will train, with its costs."""

    trial: optuna.Trial
    model_args: dict[str, Any]
    macs: int
    params: int
    over: int  # proposals above the budget's multiply-adds drawn before this one
    repeats: int  # proposals of an architecture already trained drawn before this one


def _draw(study: optuna.Study, budget: Budget, channels: int, trained: list[Trained]) -> Proposal:
    """The next proposal of a new architecture at or under the budget's multiply-adds; the
    others are told to Optuna as pruned (not trained) and drawn again."""
    seen = [t.model_args for t in trained]
    over = repeats = 0
    for _ in range(MAX_DRAWS):
        trial = study.ask()
        args = propose(trial, budget)
        macs, params = _costs(FAMILY, args, channels)
        if args in seen:
            repeats += 1
        elif macs > budget.max_macs:
            over += 1
        else:
            return Proposal(trial, args, macs, params, over, repeats)
        study.tell(trial, state=TrialState.PRUNED)
    raise CnnlabError(
        f"{MAX_DRAWS} proposals in a row cost more than {budget.max_macs:,} multiply-adds or "
        "had been trained already"
    )


def _search(out: Path, budget: Budget, channels: int) -> tuple[list[Trained], int, int]:
    """The search phase: the trained networks, and how many proposals were drawn again for
    costing too much or repeating a trained network."""
    sampler = optuna.samplers.TPESampler(n_startup_trials=budget.startup, seed=SEARCH_SEED)
    study = optuna.create_study(directions=("minimize", "minimize"), sampler=sampler)
    trained: list[Trained] = []
    over = repeats = 0
    for n in range(1, budget.trials + 1):
        p = _draw(study, budget, channels, trained)
        over, repeats = over + p.over, repeats + p.repeats
        start = time.perf_counter()
        val = _train(out / f"trial-{n:03d}", FAMILY, p.model_args, budget, SEARCH_SEED, True)
        study.tell(p.trial, (val, p.macs))
        seconds = time.perf_counter() - start
        trained.append(Trained(f"trial {n}", FAMILY, p.model_args, p.macs, p.params, val, seconds))
        print(
            f"nas trial {n}/{budget.trials}: {describe(p.model_args)}: {p.macs / 1e6:.3f} M "
            f"multiply-adds, validation error {val:.2%}",
            flush=True,
        )
    return trained, over, repeats


def _baseline(out: Path, name: str, budget: Budget, channels: int) -> Trained:
    macs, params = _costs(name, {}, channels)
    start = time.perf_counter()
    val = _train(out / name, name, {}, budget, SEARCH_SEED, search=True)
    return Trained(name, name, {}, macs, params, val, time.perf_counter() - start)


@dataclass(frozen=True)
class Result:
    """What one run of the experiment measured."""

    budget: Budget
    source: str  # the dataset's files, described
    n_test: int  # test images of the confirmation runs
    baselines: dict[str, Trained]
    trials: list[Trained]
    over: int  # proposals above the budget's multiply-adds, drawn again untrained
    repeats: int  # proposals of an architecture already trained, drawn again
    chosen: Trained | None  # the lowest validation error at no more multiply-adds than REFERENCE
    confirm: dict[int, tuple[float, float]]  # seed -> test errors of (chosen, REFERENCE)

    @property
    def front(self) -> list[Trained]:
        return pareto_front(self.trials)

    @property
    def reference(self) -> Trained:
        return self.baselines[REFERENCE]

    def mean_test_errors(self) -> tuple[float, float]:
        """(chosen, REFERENCE), averaged over the confirmation seeds."""
        searched, hand = zip(*self.confirm.values(), strict=True)
        return statistics.mean(searched), statistics.mean(hand)


def run(out: Path, budget_name: str) -> Outcome:
    budget = BUDGETS[budget_name]
    train_set, test_set = load_dataset(budget.data)
    channels = train_set.image_shape[0]
    baselines = {name: _baseline(out / "search", name, budget, channels) for name in BASELINES}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the report tells; no line per trial
    try:
        trials, over, repeats = _search(out / "search", budget, channels)
    finally:
        optuna.logging.set_verbosity(verbosity)
    affordable = [t for t in trials if t.macs <= baselines[REFERENCE].macs]
    chosen = min(affordable, key=lambda t: (t.val_error, t.macs), default=None)
    confirm: dict[int, tuple[float, float]] = {}
    for seed in budget.seeds if chosen else ():
        runs = out / "confirm"
        confirm[seed] = (
            _train(runs / f"searched-seed{seed}", FAMILY, chosen.model_args, budget, seed, False),
            _train(runs / f"{REFERENCE}-seed{seed}", REFERENCE, {}, budget, seed, False),
        )
    n_test = min(budget.limit_test or len(test_set), len(test_set))
    source = describe_source(train_set.source)
    r = Result(budget, source, n_test, baselines, trials, over, repeats, chosen, confirm)
    _write_trials(out / "trials.csv", r)
    save_figure(_figure(r), out / "nas.png")
    return Outcome(
        verdict=_verdict(r),
        findings=_findings(r),
        against_the_source=_against_the_source(r),
        figures=[
            (
                "validation accuracy against multiply-adds: the searched networks, their Pareto "
                f"front and the hand-designed baselines; the chosen network against {REFERENCE} "
                "on the test set",
                "nas.png",
            )
        ],
    )


def _verdict(r: Result) -> str:
    if r.chosen is None:
        return (
            f"no searched network came in at or under {REFERENCE}'s "
            f"{r.reference.macs / 1e6:.3f} M multiply-adds, so none could be compared with it "
            "at the same cost"
        )
    searched, hand = r.mean_test_errors()
    n = len(r.confirm)
    return (
        f"a searched network {'beat' if searched < hand else 'did not beat'} {REFERENCE} at no "
        f"more multiply-adds ({r.chosen.macs / 1e6:.3f} M against "
        f"{r.reference.macs / 1e6:.3f} M): test error {searched:.2%} against {hand:.2%}, mean "
        f"of {n} fresh seed{'s' if n > 1 else ''}"
    )


def _architecture(t: Trained) -> str:
    return describe(t.model_args) if t.model == FAMILY else get_spec(t.model).description


def _findings(r: Result) -> list[str]:
    b, reference = r.budget, r.reference
    rows = sorted([*r.front, *r.baselines.values()], key=lambda t: (t.macs, t.val_error))
    dominating = [
        t for t in r.trials if t.macs <= reference.macs and t.val_error < reference.val_error
    ]
    lines = [
        f"The search: {b.trials} `{FAMILY}` networks proposed by Optuna's TPE sampler (the "
        f"first {b.startup} at random) on two objectives, validation error and multiply-adds; "
        f"each, and each baseline with its own recipe, trained {b.epochs} epochs on the first "
        f"{b.limit_train:,} training images of {r.source}, {b.limit_train // 10:,} of "
        f"them held out for validation (seed {SEARCH_SEED}). Proposals drawn again untrained: "
        f"{r.over} above {b.max_macs / 1e6:g} M multiply-adds, {r.repeats} repeating a "
        f"trained network. The search took {sum(t.seconds for t in r.trials):.0f} s, one "
        f"{REFERENCE} run {reference.seconds:.0f} s.",
        "",
        "The search's Pareto front (the networks no other beats on both multiply-adds and "
        "validation error) and the hand-designed baselines:",
        "",
        "| network | architecture | multiply-adds | parameters | validation error |",
        "|---|---|---:|---:|---:|",
        *[
            f"| {t.name} | {_architecture(t)} | {t.macs:,} | {t.params:,} | {t.val_error:.2%} |"
            for t in rows
        ],
        "",
        f"{len(dominating)} of the {len(r.trials)} searched networks had no more multiply-adds "
        f"than {REFERENCE} and a lower validation error. Every trial: trials.csv.",
    ]
    if r.chosen is None:
        return lines
    c = r.chosen
    means = r.mean_test_errors()
    return [
        *lines,
        "",
        f"Chosen: {c.name}, the lowest validation error ({c.val_error:.2%}) at no more "
        f"multiply-adds than {REFERENCE} ({reference.val_error:.2%} at {reference.macs:,}): "
        f"{describe(c.model_args)}, {c.macs:,} multiply-adds. Trained again beside "
        f"{REFERENCE} with fresh seeds on all {b.limit_train:,} training images for "
        f"{b.epochs} epochs, tested on {r.n_test:,} test images:",
        "",
        f"| seed | searched: test error | {REFERENCE}: test error |",
        "|---:|---:|---:|",
        *[f"| {seed} | {s:.2%} | {h:.2%} |" for seed, (s, h) in r.confirm.items()],
        f"| mean | {means[0]:.3%} | {means[1]:.3%} |",
        "",
        f"The chosen architecture as `cnnlab train` takes it (the recipe's "
        f"{get_spec(FAMILY).recipe.epochs} epochs on every training image; add `--epochs "
        f"{b.epochs} --limit-train {b.limit_train}` for this experiment's budget):",
        "",
        "```",
        train_command(c.model_args, b.data),
        "```",
    ]


def _against_the_source(r: Result) -> list[str]:
    b = r.budget
    lines = [
        "- Zoph and Le train an RNN controller with reinforcement learning to propose "
        "networks layer by layer (filter sizes and counts, later strides and skip "
        "connections): 12,800 CIFAR-10 networks of 50 epochs each, on hundreds of GPUs; their "
        "best network matched the best hand-designed ones of the day in test error. Here "
        f"Optuna's TPE (Bergstra et al. 2011) proposes {len(r.trials)} networks of a LeNet/VGG-"
        f"style space, each trained {b.epochs} epochs on {b.limit_train:,} images on a CPU: "
        "a sketch of their search, not a reproduction.",
        f"- The hand design is {REFERENCE}, LeNet-5's 1998 layout with ReLU, max pooling, batch "
        "norm and dropout, trained with the same recipe as every searched network, so the "
        "comparison isolates the architecture; beating it is a smaller claim than beating "
        "the state of the art. The cost compared is multiply-adds per image "
        "(cnnlab.analysis.summary), the lectures' measure; the search itself cost "
        f"{len(r.trials)} training runs, which the claim leaves out.",
    ]
    if r.confirm:
        p = statistics.mean(r.mean_test_errors())
        se = math.sqrt(p * (1 - p) / r.n_test)
        lines.append(
            "- The search chooses on the validation error of one run per network, where the "
            "best of many noisy runs looks better than it is (the winner's curse); the verdict "
            "comes from fresh seeds on test images the search never saw. At these error levels "
            f"one error rate on {r.n_test:,} test images has a standard error of about "
            f"{se:.2%}, so differences under about twice that are within noise; the seeds show "
            "the spread of the training itself."
        )
    return lines


def _write_trials(path: Path, r: Result) -> None:
    """One row per searched network."""
    front = r.front
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("trial", "architecture", "model_args", "macs", "params", "val_error",
                     "seconds", "on_front"))  # fmt: skip
    for t in r.trials:
        writer.writerow(
            (t.name.removeprefix("trial "), describe(t.model_args), json.dumps(t.model_args),
             t.macs, t.params, f"{t.val_error:.4f}", f"{t.seconds:.1f}", t in front)
        )  # fmt: skip
    write_text_atomically(path, text.getvalue())


def _figure(r: Result) -> Figure:
    """Validation accuracy against multiply-adds (left); the confirmation runs (right)."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2, width_ratios=(2.2, 1))

    def accuracy(points: list[Trained]) -> list[float]:
        return [100 * (1 - t.val_error) for t in points]

    front = r.front
    ax.scatter([t.macs for t in r.trials], accuracy(r.trials), color="#9bb7d4", label="searched")
    ax.plot([t.macs for t in front], accuracy(front), "-o", color="#3a7dc9",
            label="Pareto front")  # fmt: skip
    for (name, t), color in zip(r.baselines.items(), ("#e67e22", "#c0392b"), strict=True):
        ax.scatter([t.macs], accuracy([t]), marker="*", s=220, color=color, zorder=3, label=name)
    if r.chosen is not None:
        ax.scatter([r.chosen.macs], accuracy([r.chosen]), s=260, facecolors="none",
                   edgecolors="black", zorder=4, label="chosen")  # fmt: skip
    ax.axvline(r.reference.macs, ls="--", lw=0.8, color="#c0392b")
    ax.set_xscale("log")
    title = f"the search on {DATA_NAMES[r.budget.data]}: accuracy against cost"
    ax.set(xlabel="multiply-adds per image", ylabel="validation accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if not r.confirm:
        bx.text(0.5, 0.5, f"no searched network at or under\n{REFERENCE}'s multiply-adds",
                ha="center", va="center")  # fmt: skip
        bx.set_axis_off()
        return fig
    for i, color in enumerate(("#3a7dc9", "#c0392b")):
        errors = [100 * pair[i] for pair in r.confirm.values()]
        bx.bar(i, statistics.mean(errors), color=color, alpha=0.5)
        bx.scatter([i] * len(errors), errors, color=color, zorder=3)
    bx.set_xticks([0, 1], ["searched", REFERENCE])
    bx.set(ylabel="test error (%)", title=f"test, fresh seeds {', '.join(map(str, r.confirm))}")
    bx.grid(alpha=0.3, axis="y")
    return fig


EXPERIMENT = Experiment(
    name="nas",
    claim="a searched architecture can beat a hand-designed one at the same cost",
    source="Zoph and Le 2017, 'Neural architecture search with reinforcement learning', "
    "ICLR; the lectures",
    run=run,
    budgets={
        name: f"{b.trials} searched networks on {b.limit_train:,} {DATA_NAMES[b.data]} training "
        f"images, {b.epochs} epochs each, under {b.max_macs / 1e6:g} M multiply-adds; "
        f"confirmation seeds {', '.join(map(str, b.seeds))}"
        for name, b in BUDGETS.items()
    },
)
