"""`dropout`: dropout reduces overfitting (Hinton et al. 2012; Srivastava et al. 2014).

lenet5_modern (no batch norm, so that dropout is the only regulariser) trained long on a
few MNIST digits, with dropout 0 and 0.5 before its two fully connected layers, the rest
of its recipe unchanged. After every epoch both are measured on their training digits in
evaluation mode (dropout off, so the two training errors compare) and on the test set: the
gap between the two is the overfitting.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from cnnlab.data.loader import BatchLoader
from cnnlab.experiments.experiment import Experiment, Outcome
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.evaluate import evaluate
from cnnlab.training.trainer import Trainer
from cnnlab.viz.save import save_figure

MODEL = "lenet5_modern"
RATES = (0.0, 0.5)  # Hinton et al.'s 0.5 for hidden units


@dataclass(frozen=True)
class Budget:
    limit_train: int
    batch_size: int
    epochs: int
    limit_test: int | None  # None: all 10,000
    seeds: tuple[int, ...]


BUDGETS = {
    "small": Budget(1_000, batch_size=32, epochs=30, limit_test=2_000, seeds=(0,)),
    "paper": Budget(10_000, batch_size=64, epochs=60, limit_test=None, seeds=(0, 1, 2)),
}


def _curve(out: Path, rate: float, budget: Budget, seed: int) -> list[dict]:
    """Train once; per epoch: training error (evaluation mode) and test error."""
    cfg = TrainConfig.from_recipe(
        MODEL, get_spec(MODEL).recipe, epochs=budget.epochs, limit_train=budget.limit_train,
        batch_size=budget.batch_size, limit_test=budget.limit_test,
        model_args={"dropout": rate, "norm": "none"}, seed=seed, quiet=True,
    )  # fmt: skip
    run_dir = out / f"dropout{rate:g}-seed{seed}"
    rows: list[dict] = []

    def record(epoch: int, row: dict) -> None:
        loader = BatchLoader(trainer.train_set, 1000, cfg.preprocessing, device=trainer.device)
        train = evaluate(trainer.model, loader, len(trainer.classes))
        rows.append({"epoch": epoch, "train": train.top1_error, "test": row["test_top1_error"]})

    trainer = Trainer(cfg, run_dir, f"cnnlab experiment dropout: p={rate:g}, seed {seed}", record)
    trainer.fit()
    return rows


def run(out: Path, budget_name: str) -> Outcome:
    budget = BUDGETS[budget_name]
    curves = {(rate, s): _curve(out, rate, budget, s) for rate in RATES for s in budget.seeds}
    final = {
        rate: {
            split: statistics.mean(curves[rate, s][-1][split] for s in budget.seeds)
            for split in ("train", "test")
        }
        for rate in RATES
    }
    gap = {rate: final[rate]["test"] - final[rate]["train"] for rate in RATES}
    save_figure(_figure(curves, budget.seeds[0]), out / "dropout.png")
    seeds = ", ".join(map(str, budget.seeds))
    lines = [
        f"{MODEL} without batch norm, {budget.epochs} epochs in batches of "
        f"{budget.batch_size} on the first {budget.limit_train:,} MNIST training digits, "
        f"tested on {f'the first {budget.limit_test:,}' if budget.limit_test else 'all 10,000'}"
        f" test digits; the final epoch's errors, mean over seeds {seeds}:",
        "",
        "| dropout | training error (eval mode) | test error | gap |",
        "|---:|---:|---:|---:|",
        *[
            f"| {rate:g} | {final[rate]['train']:.2%} | {final[rate]['test']:.2%} "
            f"| {gap[rate]:.2%} |"
            for rate in RATES
        ],
    ]
    narrower = gap[0.5] < gap[0.0]
    better = final[0.5]["test"] < final[0.0]["test"]
    return Outcome(
        verdict=f"dropout 0.5 {'narrowed' if narrower else 'did not narrow'} the "
        f"gap between training and test error ({gap[0.0]:.2%} -> {gap[0.5]:.2%}) and "
        f"{'lowered' if better else 'did not lower'} the test error "
        f"({final[0.0]['test']:.2%} -> {final[0.5]['test']:.2%})",
        findings=lines,
        against_the_source=[
            "- Hinton et al. 2012 (their Figure 1) show fewer MNIST test errors with dropout "
            "for large fully connected networks trained on all 60,000 digits over many "
            "epochs; this is a small convolutional network on a slice of the digits, where "
            "overfitting shows within minutes. The sign of the effect is what compares, not "
            "the figures.",
            "- Training error here is measured in evaluation mode after each epoch; the "
            "training error that `cnnlab train` reports is measured on the fly with dropout "
            "on, which would make dropout look worse on the training set than it is.",
        ],
        figures=[("training and test error per epoch, with and without dropout", "dropout.png")],
    )


def _figure(curves: dict[tuple[float, int], list[dict]], seed: int) -> Figure:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for rate, color in zip(RATES, ("#c0392b", "#3a7dc9"), strict=True):
        rows = curves[rate, seed]
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [100 * r["train"] for r in rows], "--", color=color,
                label=f"dropout {rate:g}: training")  # fmt: skip
        ax.plot(epochs, [100 * r["test"] for r in rows], "-", color=color,
                label=f"dropout {rate:g}: test")  # fmt: skip
    ax.set(xlabel="epoch", ylabel="top-1 error (%)",
           title=f"overfitting with and without dropout (seed {seed})")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="dropout",
    claim="dropout reduces overfitting: a smaller gap between training and test error",
    source="Hinton et al. 2012, 'Improving neural networks by preventing co-adaptation of "
    "feature detectors', arXiv:1207.0580; Srivastava et al. 2014, JMLR 15",
    run=run,
    budgets={
        name: f"{b.limit_train:,} training digits, batch {b.batch_size}, {b.epochs} epochs, "
        f"seeds {', '.join(map(str, b.seeds))}"
        for name, b in BUDGETS.items()
    },
)
