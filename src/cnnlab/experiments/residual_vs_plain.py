"""`residual-vs-plain`: the degradation problem, and residual learning as its cure (He et al.
2016, Figures 1 and 6).

plain20 and plain56 (6n+2 layers of 3x3 convolutions with batch norm, 16, 32 and 64 filters,
no shortcuts) against resnet20 and resnet56 (the same stacks with option-A identity
shortcuts), trained on CIFAR-10 with the paper's recipe as the registry holds it: SGD at 0.1,
momentum 0.9, weight decay 1e-4, batches of 128, the rate divided by 10 at half and at three
quarters of the run (the paper's 32k and 48k of 64k iterations), 4-pixel padding with random
crops and horizontal flips. The paper's degradation problem: the deeper plain network has the
HIGHER training error, so it is not overfitting but harder to optimise; the deeper residual
network has the lower. The training error is the trainer's: the running error of the epoch's
(augmented) batches in training mode; the test error is measured after every epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from cnnlab.data.sources import describe_source
from cnnlab.experiments.experiment import Experiment, Outcome
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer
from cnnlab.viz.save import save_figure

log = logging.getLogger(__name__)

NETWORKS = ("plain20", "plain56", "resnet20", "resnet56")
TITLES = {"plain20": "plain-20", "plain56": "plain-56", "resnet20": "ResNet-20",
          "resnet56": "ResNet-56"}  # fmt: skip
PAPER_ITERATIONS = 64_000
PAPER_TEST_ERROR = {"resnet20": "8.75%", "resnet56": "6.97%"}  # Table 6


@dataclass(frozen=True)
class Budget:
    limit_train: int | None  # None: all 50,000 training images
    limit_test: int | None  # None: all 10,000 test images
    epochs: int
    augment: tuple[str, ...]
    batch_size: int = 128  # the paper's
    lr: float = 0.1  # the paper's


BUDGETS = {
    # batches of 32 at a quarter of the rate: four times the updates of the same images
    "small": Budget(2_000, 1_000, epochs=4, augment=(), batch_size=32, lr=0.025),
    "paper": Budget(None, None, epochs=12, augment=("crop:4", "flip")),
}


def _train(out: Path, name: str, budget: Budget) -> tuple[list[dict], str, int, float]:
    """One network's per-epoch history, the data's source, the iterations per epoch, and the
    seconds an earlier, interrupted run of the experiment had trained it: its run directory
    DIR/NAME, if it holds the same configuration, continues from its last checkpoint."""
    cfg = TrainConfig.from_recipe(
        name, get_spec(name).recipe, data="cifar10", epochs=budget.epochs, lr=budget.lr,
        batch_size=budget.batch_size,
        limit_train=budget.limit_train, limit_test=budget.limit_test, augment=budget.augment,
        milestones=_milestones(budget), channels_last=True, seed=0, quiet=True,
    )  # fmt: skip
    run_dir = out / name
    trainer = Trainer(cfg, run_dir, f"cnnlab experiment residual-vs-plain: {name}")
    earlier = 0.0
    if _saved_config(run_dir) == trainer.cfg.to_json() and trainer.restore():
        log.info("residual-vs-plain: %s continues %s", name, trainer.resume_point)
        earlier = trainer.elapsed_s
    result = trainer.fit()
    return result.history, trainer.train_set.source, len(trainer.train_loader), earlier


def _saved_config(run_dir: Path) -> str | None:
    try:
        return (run_dir / "config.json").read_text()
    except OSError:
        return None


def run(out: Path, budget_name: str) -> Outcome:
    budget = BUDGETS[budget_name]
    trained = {name: _train(out, name, budget) for name in NETWORKS}
    history = {name: h for name, (h, _, _, _) in trained.items()}
    _, source, per_epoch, _ = trained[NETWORKS[0]]
    final = {n: (h[-1]["train_top1_error"], h[-1]["test_top1_error"]) for n, h in history.items()}
    save_figure(_figure(history, per_epoch), out / "residual_vs_plain.png")
    iterations = budget.epochs * per_epoch
    images = f"{budget.limit_train:,}" if budget.limit_train else "all 50,000"
    tests = f"the first {budget.limit_test:,}" if budget.limit_test else "all 10,000"
    worse = sum(
        p56["train_top1_error"] > p20["train_top1_error"]
        for p20, p56 in zip(history["plain20"], history["plain56"], strict=True)
    )
    lines = [
        f"{images} training images of {describe_source(source)}, {budget.epochs} epochs of "
        f"{per_epoch} iterations ({iterations:,} in all) in batches of {budget.batch_size}, "
        f"the rate {budget.lr:g} divided by 10 after epochs "
        f"{', '.join(map(str, _milestones(budget)))}; augmentation: "
        f"{' '.join(budget.augment) or 'none'}; test error on {tests} test images. The last "
        "epoch's errors:",
        "",
        "| network | training error | test error |",
        "|---|---:|---:|",
        *[f"| {TITLES[n]} | {final[n][0]:.2%} | {final[n][1]:.2%} |" for n in NETWORKS],
        "",
        f"plain-56's training error was above plain-20's after {worse} of {budget.epochs} epochs.",
    ]
    degraded = final["plain56"][0] > final["plain20"][0]
    cured = final["resnet56"][0] < final["resnet20"][0]
    verdict = (
        f"plain-56's training error ended {'above' if degraded else 'not above'} plain-20's "
        f"({final['plain56'][0]:.2%} against {final['plain20'][0]:.2%}: the degradation "
        f"problem {'showed' if degraded else 'did not show'}) and ResNet-56's "
        f"{'below' if cured else 'not below'} ResNet-20's ({final['resnet56'][0]:.2%} against "
        f"{final['resnet20'][0]:.2%})"
    )
    return Outcome(
        verdict=verdict,
        findings=lines,
        against_the_source=_against(budget, iterations, degraded, cured, source),
        figures=[("training error (dashed) and test error (solid) against iterations, plain "
                  "networks left, residual right (the paper's Figure 6)",
                  "residual_vs_plain.png")],
        earlier_seconds=sum(earlier for _, _, _, earlier in trained.values()),
    )  # fmt: skip


def _milestones(budget: Budget) -> tuple[int, ...]:
    """The epochs after which the rate drops: half and three quarters of the run."""
    return tuple(round(budget.epochs * f) for f in (0.5, 0.75))


def _against(budget: Budget, iterations: int, degraded: bool, cured: bool,
             source: str) -> list[str]:  # fmt: skip
    share = iterations / PAPER_ITERATIONS
    lines = [
        f"- He et al. train {PAPER_ITERATIONS:,} iterations (about 164 epochs) and reach test "
        f"errors of {PAPER_TEST_ERROR['resnet20']} (ResNet-20) and "
        f"{PAPER_TEST_ERROR['resnet56']} (ResNet-56, Table 6); in their Figure 6 plain-56's "
        "training error stays above plain-20's throughout, and ResNet-56's ends below "
        f"ResNet-20's. This run has {iterations:,} iterations ({share:.1%} of theirs), the "
        "same schedule compressed, so its errors are far from converged and compare between "
        "the four networks, not with the paper's figures.",
        "- Per-channel mean/std normalisation instead of per-pixel mean subtraction; one seed"
        + (", and the JPEG re-encoded copy of CIFAR-10" if source == "cifar10-jpeg" else "")
        + ".",
    ]
    if budget.limit_train is not None:
        lines.append(
            f"- This budget trains on {budget.limit_train:,} images"
            + ("" if budget.augment else " without augmentation")
            + (
                f", in batches of {budget.batch_size} at rate {budget.lr:g} (the paper: 128 at "
                "0.1, the same rate per example),"
                if budget.batch_size != 128
                else ""
            )
            + " so that it runs in minutes; so few iterations may be too early for the deeper "
            "networks to show their difference."
        )
    if not degraded:
        lines.append(
            "- The degradation problem did not show at this budget: the paper's gap between "
            "plain-56 and plain-20 is measured at convergence and over tens of thousands of "
            "iterations."
        )
    if not cured:
        lines.append(
            "- ResNet-56 did not end below ResNet-20 here, unlike the paper's runs of "
            f"{PAPER_ITERATIONS:,} iterations: a run this short measures early training, not "
            "the converged networks."
        )
    return lines


def _figure(history: dict[str, list[dict]], per_epoch: int) -> Figure:
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    first = None
    for column, kind in enumerate(("plain", "resnet")):
        ax = fig.add_subplot(1, 2, column + 1, sharey=first)
        first = first or ax
        for depth, color in (("20", "#e6a817"), ("56", "#c0392b")):
            rows = history[f"{kind}{depth}"]
            x = [r["epoch"] * per_epoch for r in rows]
            name = TITLES[f"{kind}{depth}"]
            ax.plot(x, [100 * r["train_top1_error"] for r in rows], "--", color=color,
                    linewidth=1, label=f"{name}: training")  # fmt: skip
            ax.plot(x, [100 * r["test_top1_error"] for r in rows], "-", color=color,
                    linewidth=2, label=f"{name}: test")  # fmt: skip
        ax.set(xlabel="iterations", ylabel="error (%)",
               title="plain networks" if kind == "plain" else "residual networks")  # fmt: skip
        ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="residual-vs-plain",
    claim="a deeper plain network has a higher training error than a shallower one (the "
    "degradation problem), while the deeper residual network has a lower one",
    source="He, Zhang, Ren and Sun 2016, 'Deep residual learning for image recognition', "
    "CVPR, Figures 1 and 6 (plain-20/56 and ResNet-20/56 on CIFAR-10)",
    run=run,
    budgets={
        name: f"{f'{b.limit_train:,}' if b.limit_train else 'all 50,000'} training images, "
        f"{b.epochs} epochs in batches of {b.batch_size} (the paper's 64k-iteration schedule "
        f"compressed: rate {b.lr:g}, divided by 10 after epochs "
        f"{', '.join(map(str, _milestones(b)))}), augmentation "
        f"{' '.join(b.augment) or 'none'}, test on "
        f"{f'{b.limit_test:,}' if b.limit_test else 'all 10,000'} images"
        for name, b in BUDGETS.items()
    },
    continues=True,
)
