"""`depth`: Zeiler and Fergus 2014, Table 3: remove layers of an AlexNet and train each
network from scratch. On ImageNet, removing the fully connected layers 6 and 7, or the
middle convolutions 3 and 4, changed the error little; removing both left a four-layer
network far worse than either: "the overall depth of the model is important".

The network is alexnet_small (cnnlab.models.alexnet: five convolutions with batch norm
after each ReLU, three max pools, fc6 and fc7 with dropout, fc8) at half its widths, on
CIFAR-10. A removal replaces the layers by identities; conv5 is rebuilt to read conv2's
maps when conv3 and conv4 go, fc8 to read pool5's features when fc6 and fc7 go. Every
network is trained with alexnet_small's recipe (SGD with Nesterov momentum, one-cycle
schedule) by the short loop below: the Trainer builds registered models by name, and no
family's config can drop layers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from cnnlab.analysis.paper import measure
from cnnlab.data.augment import Augment
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import BatchLoader
from cnnlab.data.preprocessing import CIFAR10
from cnnlab.data.sources import describe_source, load_dataset
from cnnlab.device import resolve_device
from cnnlab.experiments.experiment import Experiment, Outcome
from cnnlab.experiments.parts import FinishedParts
from cnnlab.layers import conv2d
from cnnlab.registry import create_model, get_spec
from cnnlab.training.evaluate import evaluate
from cnnlab.training.metrics import ClassificationMeter
from cnnlab.training.optimizers import create_optimizer
from cnnlab.training.schedules import ScheduleFactor, create_schedule
from cnnlab.viz.save import save_figure

log = logging.getLogger(__name__)

MODEL = "alexnet_small"
WIDTHS, FC_WIDTH = (24, 64, 96, 96, 64), 256  # half of alexnet_small's (48, 128, ...), 512
INPUT = (3, 32, 32)
# Table 3's removals, by layer number (conv1-5 = 1-5, fc6 = 6, fc7 = 7)
ABLATIONS: dict[str, tuple[int, ...]] = {
    "full": (),
    "without layer 7": (7,),
    "without layers 6, 7": (6, 7),
    "without layers 3, 4": (3, 4),
    "without layers 3, 4, 6, 7": (3, 4, 6, 7),
}
PAPER = {  # Table 3, Zeiler and Fergus's replication of Krizhevsky et al.: (train, val) top-1 %
    "full": (35.1, 40.5),
    "without layer 7": (27.4, 40.0),
    "without layers 6, 7": (27.4, 44.8),
    "without layers 3, 4": (41.8, 45.4),
    "without layers 3, 4, 6, 7": (71.1, 71.3),
}


@dataclass(frozen=True)
class Budget:
    limit_train: int | None  # None: all 50,000
    epochs: int
    limit_test: int | None  # None: all 10,000
    augment: tuple[str, ...]  # cnnlab.data.augment specs


BUDGETS = {
    "small": Budget(4_000, epochs=3, limit_test=1_000, augment=()),
    "paper": Budget(None, epochs=30, limit_test=None, augment=("crop:4", "flip")),
}


def build(removed: tuple[int, ...], seed: int = 0) -> nn.Module:
    """alexnet_small at WIDTHS and FC_WIDTH for 10 classes, without the layers `removed`
    (one of ABLATIONS' tuples)."""
    if tuple(removed) not in ABLATIONS.values():
        raise ValueError(f"removed={removed!r}: expected one of {list(ABLATIONS.values())}")
    torch.manual_seed(seed)
    model = create_model(MODEL, num_classes=10, in_chans=INPUT[0], widths=WIDTHS,
                         fc_width=FC_WIDTH)  # fmt: skip
    if {3, 4} <= set(removed):
        model.conv3, model.conv4 = nn.Identity(), nn.Identity()
        model.conv5 = nn.Sequential(  # alexnet_small's block: convolution, ReLU, batch norm
            conv2d(WIDTHS[1], WIDTHS[4], 3, padding=1), nn.ReLU(), nn.BatchNorm2d(WIDTHS[4])
        )
    if 7 in removed:
        model.fc7 = nn.Identity()  # fc8 (with its dropout) now reads fc6
    if 6 in removed:
        features = model.fc6[0].in_features  # pool5's maps, flattened
        model.fc6 = nn.Identity()
        model.output = nn.Linear(features, 10)  # no hidden layer left to drop units of
    return model


def _train(model: nn.Module, train: ImageDataset, test: ImageDataset, budget: Budget,
           seed: int = 0) -> dict:  # fmt: skip
    """Train with alexnet_small's recipe; per epoch the training error (on the fly) and the
    test error, then the training error in evaluation mode."""
    recipe = get_spec(MODEL).recipe
    device = next(model.parameters()).device
    loader = BatchLoader(train, recipe.batch_size, CIFAR10, shuffle=True, seed=seed, device=device)
    test_loader = BatchLoader(test, 1000, CIFAR10, device=device)
    augment = Augment.for_dataset(budget.augment, train, CIFAR10) if budget.augment else None
    optimizer = create_optimizer(recipe.optimizer, model.parameters(), recipe.lr,
                                 recipe.momentum, recipe.nesterov, recipe.weight_decay)  # fmt: skip
    scheduler = create_schedule(
        optimizer, ScheduleFactor(recipe.schedule, budget.epochs, len(loader))
    )
    curve = []
    for epoch in range(budget.epochs):
        model.train()
        loader.set_epoch(epoch)
        meter = ClassificationMeter(10, device)
        for step, (x, y) in enumerate(loader):
            if augment is not None:
                x = augment(x, seed=seed, epoch=epoch, step=step)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            meter.update(logits, y, loss)
        curve.append((meter.top1_error, evaluate(model, test_loader, 10).top1_error))
    train_error = evaluate(model, BatchLoader(train, 1000, CIFAR10, device=device), 10).top1_error
    return {"curve": curve, "train": train_error, "test": curve[-1][1]}


def _ablation(name: str, train: ImageDataset, test: ImageDataset, budget: Budget,
              device: torch.device) -> dict:  # fmt: skip
    """The network `name` of ABLATIONS: its costs, then its errors once trained."""
    removed = ABLATIONS[name]
    model = build(removed)
    costs = measure(model, INPUT)
    result = {**_train(model.to(device), train, test, budget), "layers": 8 - len(removed),
              "params": int(costs["params"]), "macs": int(costs["macs"]),
              "fc_share": costs["params_fc_share"]}  # fmt: skip
    log.info("depth: %s: test error %.2f%%", name, 100 * result["test"])
    return result


def run(out: Path, budget_name: str) -> Outcome:
    budget = BUDGETS[budget_name]
    train, test = load_dataset("cifar10")
    if budget.limit_train is not None:
        train = train.subset(slice(0, budget.limit_train))
    if budget.limit_test is not None:
        test = test.subset(slice(0, budget.limit_test))
    device = resolve_device("auto")
    parts = FinishedParts(out, budget)
    results = {
        name: parts.get(name, lambda name=name: _ablation(name, train, test, budget, device))
        for name in ABLATIONS
    }
    full = results["full"]
    change = {name: 100 * (r["test"] - full["test"]) for name, r in results.items()}
    save_figure(_figure(results), out / "depth.png")
    lines = [
        f"{MODEL} at widths {WIDTHS}, fc6 and fc7 of {FC_WIDTH} units, trained from scratch "
        f"with its recipe for {budget.epochs} epochs on "
        f"{f'the first {len(train):,}' if budget.limit_train else f'all {len(train):,}'} "
        f"training images of {describe_source(train.source)}"
        + (f", augmented ({', '.join(budget.augment)})" if budget.augment else "")
        + f"; tested on {len(test):,} test images. Training error in evaluation mode after "
        "training; change: test error minus the full network's, in percentage points.",
        "",
        "| network | weight layers | parameters | multiply-adds | training error | test error "
        "| change |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {name} | {r['layers']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M "
            f"| {r['train']:.2%} | {r['test']:.2%} | {change[name]:+.2f} |"
            for name, r in results.items()
        ],
    ]
    fc, middle, both = (change[n] for n in list(ABLATIONS)[2:])
    paper = {n: PAPER[n][1] - PAPER["full"][1] for n in PAPER}
    paper_ratio = paper["without layers 3, 4, 6, 7"] / (
        paper["without layers 6, 7"] + paper["without layers 3, 4"]
    )
    superadditive = both > fc + middle
    return Outcome(
        verdict=f"removing layers 6 and 7 changed the test error by {fc:+.2f} points, "
        f"layers 3 and 4 by {middle:+.2f}, all four by {both:+.2f}: "
        f"{'worse' if superadditive else 'no worse'} than the two removals added up "
        f"({fc + middle:+.2f})",
        findings=lines,
        against_the_source=[
            "- Zeiler and Fergus (Table 3, their replication of Krizhevsky et al.'s network on "
            "ImageNet, validation top-1 error 40.5%) measured "
            + ", ".join(f"{n}: {p:+.1f}" for n, p in paper.items() if n != "full")
            + f" points: removing all four cost {paper_ratio:.1f} times the two removals "
            "added up. Here: "
            + ", ".join(f"{n}: {c:+.2f}" for n, c in change.items() if n != "full")
            + f" points: removing all four {'raised' if both > 0 else 'did not raise'} the "
            f"error and was {'worse' if superadditive else 'no worse'} than the two removals "
            "added up.",
            "- Zeiler and Fergus trained their network for 70 epochs of ImageNet (Section "
            "3), each ablation from scratch; here "
            f"{budget.epochs} epochs leave the full network at {full['train']:.1%} training "
            "error. The less a budget lets the networks fit their training set, the more it "
            "favours those that learn fastest, often the smaller ones: only a budget that "
            "trains them to convergence asks the paper's question.",
            "- ImageNet's 1,000 classes at 224x224 against CIFAR-10's 10 at 32x32: fc6-fc8 "
            f"hold {full['fc_share']:.0%} of the parameters here (AlexNet's, as one tower: "
            f"94%), but the network is about a hundred times smaller "
            f"({full['params'] / 1e6:.2f} M parameters against 61 M), so the absolute errors "
            "do not compare, only the direction and size of the changes.",
            "- The networks here have batch norm after every convolution (alexnet_small's), "
            "where Krizhevsky et al.'s had response normalisation after the first two; batch "
            "norm lets every ablation train with one recipe, which may soften what removing "
            "layers does to optimisation.",
            f"- One run per network, tested on {len(test):,} images: a test error near "
            f"{full['test']:.0%} has a sampling standard error of "
            f"{100 * (full['test'] * (1 - full['test']) / len(test)) ** 0.5:.1f} points, and "
            "another seed would move each network's error too, so changes of that size are "
            "not differences.",
        ],
        figures=[
            ("training and test error of each network, and its test error per epoch", "depth.png")
        ],
        earlier_seconds=parts.reused_seconds,
    )


def _figure(results: dict[str, dict]) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    bars, curves = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    names = list(results)
    x = list(range(len(names)))
    bars.bar([i - 0.2 for i in x], [100 * results[n]["train"] for n in names], 0.4,
             label="training (eval mode)", color="#9bbbe0")  # fmt: skip
    bars.bar([i + 0.2 for i in x], [100 * results[n]["test"] for n in names], 0.4,
             label="test", color="#3a7dc9")  # fmt: skip
    bars.set_xticks(x, [n.replace("without ", "-").replace("layers ", "").replace("layer ", "")
                        for n in names], fontsize=8)  # fmt: skip
    bars.set(ylabel="top-1 error (%)", title="error after training, by layers removed")
    bars.legend(fontsize=8)
    for i, name in enumerate(names):
        test = [100 * t for _, t in results[name]["curve"]]
        curves.plot(range(1, len(test) + 1), test, "o-", color=f"C{i}", label=name)
    curves.set(xlabel="epoch", ylabel="test error (%)", title="test error per epoch")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    name="depth",
    claim="removing the fully connected layers 6-7 or the middle convolutions 3-4 of an "
    "AlexNet changes its error little; removing both hurts a lot: depth matters",
    source="Zeiler and Fergus 2014, 'Visualizing and understanding convolutional networks', "
    "ECCV, Section 5.1 ('Varying ImageNet model sizes') and Table 3",
    run=run,
    budgets={
        name: f"CIFAR-10, {f'{b.limit_train:,}' if b.limit_train else 'all 50,000'} training "
        f"images, {b.epochs} epochs"
        + (f", augmented ({', '.join(b.augment)})" if b.augment else ", no augmentation")
        + f", {f'{b.limit_test:,}' if b.limit_test else 'all 10,000'} test images, one seed"
        for name, b in BUDGETS.items()
    },
    continues=True,
)
