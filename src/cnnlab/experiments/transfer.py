"""`transfer`: with few examples, transferred features beat training from scratch; with
more, the gap closes and fine-tuning beats frozen features (Yosinski et al. 2014; the
lectures' rule).

Yosinski et al. split ImageNet's classes into two tasks, A and B, trained a network on A
and transferred its first layers to B, frozen or fine-tuned. Here the tasks are MNIST
digits 0-4 (A) and 5-9 (B): lenet5_modern learns digits 0-4, then four networks learn
digits 5-9 from 10, 100 or 1,000 training examples per class:
- from scratch;
- frozen features: every weight but a new classifier taken from the A network and frozen
  (`--freeze all-but-head`), the lectures' choice when examples are few;
- frozen convolutions: C1 to S4 taken and frozen, C5, F6 and the new classifier train
  (`--freeze stages:4`), a shallower transfer in Yosinski et al.'s manner;
- fine-tuning: every weight but the new classifier taken, everything trains (`--freeze none`).
The new classifier learns at ten times the recipe's rate, the weights taken from A at the
recipe's rate (`--backbone-lr-mult 0.1`): CS231n's advice, a smaller rate for the
pretrained weights than for the new classifier. Each network is tested on the test digits
5-9 after its last epoch.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from cnnlab.data.class_subset import examples_per_class, keep_classes
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.sources import load_dataset
from cnnlab.experiments.experiment import Experiment, Outcome
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import RunResult, Trainer
from cnnlab.viz.save import save_figure

MODEL = "lenet5_modern"
SOURCE_CLASSES = ("0", "1", "2", "3", "4")  # task A
TARGET_CLASSES = ("5", "6", "7", "8", "9")  # task B
SIZES = (10, 100, 1_000)  # training examples per class of task B
BATCH = 32  # task B's batches (10 per class makes 50 examples)
HEAD_LR_MULT = 10.0  # the new classifier's rate over the recipe's, in a transferred network


@dataclass(frozen=True)
class Method:
    """How a network for task B starts and what of it trains."""

    name: str
    pretrained: bool  # start from the task-A network (all but its classifier)
    freeze: str = "none"
    color: str = "#7f7f7f"


SCRATCH, FROZEN, CONVS, TUNED = (
    "from scratch",
    "frozen features",
    "frozen convolutions",
    "fine-tuning",
)
METHODS = (
    Method(SCRATCH, pretrained=False),
    Method(FROZEN, pretrained=True, freeze="all-but-head", color="#3a7dc9"),
    Method(CONVS, pretrained=True, freeze="stages:4", color="#27ae60"),
    Method(TUNED, pretrained=True, color="#c0392b"),
)


@dataclass(frozen=True)
class Budget:
    source_train: int | None  # the first N training digits 0-4 (None: all 30,596)
    source_epochs: int
    epochs: tuple[int, ...]  # task B's epochs for each of SIZES: fewer examples, more passes
    limit_test: int | None  # the first N test digits 5-9 (None: all 4,861)
    seeds: tuple[int, ...]  # each draws its own examples, classifier and order


BUDGETS = {
    "small": Budget(6_000, 3, epochs=(30, 10, 4), limit_test=2_000, seeds=(0,)),
    "paper": Budget(None, 15, epochs=(100, 30, 10), limit_test=None, seeds=(0, 1, 2, 3, 4)),
}


class _GivenData(Trainer):
    """A Trainer on datasets made here (some classes, n examples each) instead of cfg.data's."""

    def __init__(
        self, cfg: TrainConfig, run_dir: Path, command: str, data: tuple[ImageDataset, ImageDataset]
    ) -> None:
        self._given = data
        super().__init__(cfg, run_dir, command)

    def _datasets(self) -> tuple[ImageDataset, None, ImageDataset]:
        train, test = self._given
        return train, None, test


def _train(
    run_dir: Path, command: str, data: tuple[ImageDataset, ImageDataset], **settings: object
) -> RunResult:
    cfg = TrainConfig.from_recipe(MODEL, get_spec(MODEL).recipe, quiet=True, **settings)
    return _GivenData(cfg, run_dir, f"cnnlab experiment transfer: {command}", data).fit()


def _rates(method: Method) -> dict[str, float]:
    """The new classifier at HEAD_LR_MULT times the recipe's rate, taken weights at 1x."""
    if not method.pretrained:
        return {}
    lr = get_spec(MODEL).recipe.lr * HEAD_LR_MULT
    frozen_backbone = method.freeze == "all-but-head"
    return {"lr": lr, "backbone_lr_mult": 1.0 if frozen_backbone else 1 / HEAD_LR_MULT}


def run(out: Path, budget_name: str) -> Outcome:
    budget = BUDGETS[budget_name]
    train, test = load_dataset("mnist")
    source_train = keep_classes(train, SOURCE_CLASSES)
    if budget.source_train is not None:
        source_train = source_train.subset(slice(0, budget.source_train))
    source_test = keep_classes(test, SOURCE_CLASSES)
    target_train = keep_classes(train, TARGET_CLASSES)
    target_test = keep_classes(test, TARGET_CLASSES)
    if budget.limit_test is not None:
        target_test = target_test.subset(slice(0, budget.limit_test))
    source = _train(
        out / "task-a-digits-0-4", "task A, digits 0-4", (source_train, source_test),
        epochs=budget.source_epochs,
    )  # fmt: skip
    checkpoint = str(source.run_dir / "checkpoints" / "last.safetensors")
    errors: dict[tuple[str, int], list[float]] = {}
    for n, epochs in zip(SIZES, budget.epochs, strict=True):
        for seed in budget.seeds:
            data = (examples_per_class(target_train, n, seed), target_test)
            for m in METHODS:
                result = _train(
                    out / f"{m.name.replace(' ', '-')}-{n}-per-class-seed{seed}",
                    f"{m.name}, digits 5-9, {n} per class, seed {seed}", data,
                    epochs=epochs, batch_size=BATCH, seed=seed, freeze=m.freeze,
                    init_from=checkpoint if m.pretrained else None, **_rates(m),
                )  # fmt: skip
                errors.setdefault((m.name, n), []).append(result.final["test_top1_error"])
    save_figure(_figure(errors, budget.seeds), out / "transfer.png")
    sizes = (len(source_train), len(source_test), len(target_test))
    return _outcome(budget, errors, source.final["test_top1_error"], sizes)


def _outcome(
    budget: Budget,
    errors: dict[tuple[str, int], list[float]],
    source_error: float,
    sizes: tuple[int, int, int],
) -> Outcome:
    """The table, the verdict and the comparison; `sizes`: task A's training and test
    digits, task B's test digits."""
    source_size, source_test, test_size = sizes
    mean = {key: statistics.mean(values) for key, values in errors.items()}
    spread = len(budget.seeds) > 1

    def cell(name: str, n: int) -> str:
        sd = f" ± {statistics.stdev(errors[name, n]):.2%}" if spread else ""
        return f"{mean[name, n]:.2%}{sd}"

    few, many = SIZES[0], SIZES[-1]
    err = {m.name: {n: mean[m.name, n] for n in SIZES} for m in METHODS}
    scratch, frozen, convs, tuned = err[SCRATCH], err[FROZEN], err[CONVS], err[TUNED]
    best = {n: min((err[m.name][n], m.name) for m in METHODS[1:]) for n in SIZES}
    gap = {n: scratch[n] - best[n][0] for n in SIZES}  # > 0: the best transfer wins
    passes = ", ".join(f"{e} epochs for n = {n:,}" for n, e in zip(SIZES, budget.epochs))
    seeds = ", ".join(map(str, budget.seeds))
    findings = [
        f"Task A: {MODEL} trained {budget.source_epochs} epochs on {source_size:,} training "
        f"digits 0-4 with its recipe (Adam at {get_spec(MODEL).recipe.lr:g}, one-cycle "
        f"schedule); its error on all {source_test:,} test digits 0-4: {source_error:.2%}.",
        "",
        f"Task B: digits 5-9 from n training examples per class, drawn by each seed; the same "
        f"recipe in batches of {BATCH}, {passes}; a transferred network's new classifier at "
        f"{HEAD_LR_MULT:g} times the rate. Test error on "
        f"{'the first ' if budget.limit_test else 'all '}{test_size:,} test digits 5-9 after "
        f"the last epoch, mean over seeds {seeds}"
        f"{' (± the standard deviation)' if spread else ''}:",
        "",
        "| examples per class | from scratch | frozen features | frozen convolutions "
        "| fine-tuning | best transfer's gain |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {n:,} | {' | '.join(cell(m.name, n) for m in METHODS)} "
            f"| {100 * gap[n]:+.2f} points |"
            for n in SIZES
        ],
        "",
        "Frozen features: only a new classifier trains on task A's F6 features. Frozen "
        "convolutions: C1-S4 stay task A's, C5, F6 and the classifier train. The gain: the "
        "error from scratch minus the best transfer's (positive: transfer wins).",
    ]  # fmt: skip
    verdict = (
        f"with {few} examples per class transfer {'won' if gap[few] > 0 else 'did not win'} "
        f"({best[few][1]} {best[few][0]:.2%} against {scratch[few]:.2%} from scratch"
        + ("" if best[few][1] == FROZEN else f"; frozen features {frozen[few]:.2%}")
        + f"); with {many:,} transfer's gain "
        f"{'shrank' if gap[many] < gap[few] else 'did not shrink'}"
        f" ({100 * gap[few]:+.2f} -> {100 * gap[many]:+.2f} points) and fine-tuning "
        f"{'beat' if tuned[many] < frozen[many] else 'did not beat'} frozen features "
        f"({tuned[many]:.2%} against {frozen[many]:.2%})"
    )
    return Outcome(
        verdict=verdict,
        findings=findings,
        against_the_source=_against(errors, scratch, frozen, convs, tuned, test_size, spread),
        figures=[("test error on digits 5-9 against the examples per class", "transfer.png")],
    )


def _against(
    errors: dict[tuple[str, int], list[float]],
    scratch: dict[int, float],
    frozen: dict[int, float],
    convs: dict[int, float],
    tuned: dict[int, float],
    test_size: int,
    spread: bool,
) -> list[str]:
    """Where the measurement meets Yosinski et al.'s findings and the lectures' rule."""
    few, many = SIZES[0], SIZES[-1]
    specific = [n for n in SIZES if frozen[n] > convs[n]]
    where = (
        "at every size"
        if len(specific) == len(SIZES)
        else f"at {', '.join(f'{n:,}' for n in specific)} examples per class only"
        if specific
        else "at no size"
    )
    noise = (
        "standard deviations over the seeds {:.2%} and {:.2%}".format(
            *(statistics.stdev(errors[name, many]) for name in (SCRATCH, TUNED))
        )
        if spread
        else "one seed, so the noise between runs is not measured"
    )
    return [
        "- Yosinski et al. did not vary the number of examples: they transferred the first n "
        "of AlexNet's 8 layers between two halves of ImageNet (about 645,000 images each), "
        "frozen (AnB) or fine-tuned (AnB+). The rule tested here, frozen features when "
        "examples are few and fine-tuning when there are more, is the lectures' (CS231n's "
        "notes on transfer learning), for features learned on a large, varied dataset; task "
        "A here is five digit classes.",
        "- Their frozen upper layers lost accuracy, being specific to task A. Here the new "
        f"classifier on the frozen F6 features did worse than retraining C5 and F6 on the "
        f"frozen convolutions {where} (with {few} per class {frozen[few]:.2%} against "
        f"{convs[few]:.2%}; with {many:,}, {frozen[many]:.2%} against {convs[many]:.2%}).",
        "- Their fine-tuned networks kept an edge over training from scratch with all the "
        f"data; here fine-tuning with {many:,} examples per class "
        f"{'beat' if tuned[many] < scratch[many] else 'did not beat'} it ({tuned[many]:.2%} "
        f"against {scratch[many]:.2%}, about {abs(tuned[many] - scratch[many]) * test_size:.0f}"
        f" of {test_size:,} test digits; {noise}).",
        f"- MNIST is easy: from scratch, {few} examples per class already give "
        f"{scratch[few]:.2%} error, which leaves transfer less to win than on ImageNet. One "
        "task-A network (seed 0) serves every cell; the seeds vary the examples drawn, the "
        "new classifier and the data order. Yosinski et al. fine-tuned at one rate; here the "
        f"new classifier learns {HEAD_LR_MULT:g} times faster than the transferred weights.",
    ]


def _figure(errors: dict[tuple[str, int], list[float]], seeds: tuple[int, ...]) -> Figure:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for m in METHODS:
        values = [[100 * e for e in errors[m.name, n]] for n in SIZES]
        means = [statistics.mean(v) for v in values]
        low = [mean - min(v) for mean, v in zip(means, values, strict=True)]
        high = [max(v) - mean for mean, v in zip(means, values, strict=True)]
        ax.errorbar(SIZES, means, yerr=[low, high], color=m.color, marker="o", capsize=3,
                    label=m.name)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(SIZES, [f"{n:,}" for n in SIZES])
    which = "seed" if len(seeds) == 1 else "mean and range over seeds"
    ax.set(xlabel="training examples per class (digits 5-9)", ylabel="test error (%)",
           title=f"transfer from digits 0-4 ({which} {', '.join(map(str, seeds))})")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="transfer",
    claim="with few examples, transferred features beat training from scratch; with more, "
    "the gap closes and fine-tuning beats frozen features",
    source="Yosinski et al. 2014, 'How transferable are features in deep neural networks?', "
    "NIPS; the lectures' rule (CS231n, transfer learning)",
    run=run,
    budgets={
        name: f"task A: {f'{b.source_train:,}' if b.source_train else 'all'} training digits "
        f"0-4, {b.source_epochs} epochs; task B: 10, 100, 1,000 examples per class for "
        f"{', '.join(map(str, b.epochs))} epochs, tested on "
        f"{f'the first {b.limit_test:,}' if b.limit_test else 'all'} test digits 5-9, seeds "
        f"{', '.join(map(str, b.seeds))}"
        for name, b in BUDGETS.items()
    },
)
