"""`bottleneck`: a 1x1 convolution before a 5x5 one cuts its cost about tenfold.

The example is GoogLeNet's inception (3a) 5x5 branch (Szegedy et al. 2015, Table 1: a
28x28x192 input, "#5x5 reduce" 16, "#5x5" 32), the lectures' worked example: a direct 5x5
convolution to 32 maps costs 28*28*32 * 5*5*192 = 120.4 M multiply-adds; reducing to 16
maps with a 1x1 convolution first costs 28*28*16*192 + 28*28*32 * 5*5*16 = 2.4 M + 10.0 M.
The experiment counts both with `cnnlab.analysis` and times both, forward and forward plus
backward, on this machine.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.analysis.paper import measure
from cnnlab.experiments.experiment import Experiment, Outcome
from cnnlab.speed.peak import best_seconds
from cnnlab.viz.save import save_figure

INPUT = (192, 28, 28)  # inception (3a)'s input: C, H, W
REDUCE, OUT = 16, 32  # its "#5x5 reduce" and "#5x5" (Table 1)
BUDGETS = {"small": (8, 3), "paper": (128, 10)}  # batch, timed repeats (best of)


def direct() -> nn.Module:
    """The 5x5 convolution straight from 192 to 32 maps, same padding."""
    return nn.Sequential(nn.Conv2d(INPUT[0], OUT, 5, padding=2), nn.ReLU())


def with_bottleneck() -> nn.Module:
    """A 1x1 convolution to 16 maps (with its ReLU, as in Inception), then the 5x5."""
    return nn.Sequential(
        nn.Conv2d(INPUT[0], REDUCE, 1), nn.ReLU(), nn.Conv2d(REDUCE, OUT, 5, padding=2), nn.ReLU()
    )


def expected_macs() -> tuple[int, int]:
    """The lecture's arithmetic: (direct, with the bottleneck)."""
    _, h, w = INPUT
    return h * w * OUT * 5 * 5 * INPUT[0], h * w * REDUCE * INPUT[0] + h * w * OUT * 5 * 5 * REDUCE


def _times_ms(model: nn.Module, batch: int, repeats: int) -> tuple[float, float]:
    """Best forward and forward-plus-backward times in milliseconds."""
    torch.manual_seed(0)
    x = torch.randn(batch, *INPUT, requires_grad=True)
    device = torch.device("cpu")
    with torch.no_grad():
        forward = best_seconds(lambda: model(x), device, repeats)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    return forward * 1e3, best_seconds(train_step, device, repeats) * 1e3


def run(out: Path, budget: str) -> Outcome:
    batch, repeats = BUDGETS[budget]
    rows = []
    for name, build in (("direct 5x5", direct), ("1x1 to 16, then 5x5", with_bottleneck)):
        model = build()
        costs = measure(model, INPUT)
        forward, train = _times_ms(model, batch, repeats)
        rows.append((name, int(costs["macs"]), int(costs["params"]), forward, train))
    (_, macs_a, params_a, fwd_a, train_a), (_, macs_b, params_b, fwd_b, train_b) = rows
    mac_ratio, fwd_ratio, train_ratio = macs_a / macs_b, fwd_a / fwd_b, train_a / train_b
    figure = _figure(rows, batch)
    save_figure(figure, out / "bottleneck.png")
    table = [
        f"Input 28x28x192, batch {batch}, best of {repeats} timed runs:",
        "",
        "| branch | multiply-adds per image | parameters | forward (ms) "
        "| forward + backward (ms) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {m:,} | {p:,} | {f:.2f} | {t:.2f} |" for n, m, p, f, t in rows],
        f"| ratio | {mac_ratio:.2f}x | {params_a / params_b:.2f}x | {fwd_ratio:.2f}x "
        f"| {train_ratio:.2f}x |",
    ]
    expected = expected_macs()
    agrees = (macs_a, macs_b) == expected
    slower = "less" if fwd_ratio < mac_ratio else "as much or more"
    return Outcome(
        verdict=f"the 1x1 bottleneck cuts the multiply-adds {mac_ratio:.1f}-fold and the "
        f"measured forward time {fwd_ratio:.1f}-fold (forward + backward {train_ratio:.1f}-fold)",
        findings=table,
        against_the_source=[
            f"- Multiply-adds: the lecture's arithmetic gives {expected[0] / 1e6:.1f} M and "
            f"{expected[1] / 1e6:.1f} M; `cnnlab.analysis` counts {macs_a / 1e6:.1f} M and "
            f"{macs_b / 1e6:.1f} M ({'the same' if agrees else 'NOT the same'}; biases and "
            "ReLUs are not multiply-adds).",
            f"- Time falls {slower} than the multiply-adds ({fwd_ratio:.1f}x against "
            f"{mac_ratio:.1f}x)"
            + (
                ": the two small convolutions of the bottleneck do less arithmetic per byte "
                "they move than one large convolution, and each call has a fixed overhead, so "
                "a count of multiply-adds bounds the speed-up rather than promises it."
                if slower == "less"
                else "."
            )
            + " Batch and machine matter: compare the budgets.",
        ],
        figures=[("multiply-adds and time, direct against bottleneck", "bottleneck.png")],
    )


def _figure(rows: list[tuple], batch: int) -> Figure:
    fig = Figure(figsize=(8, 3.2))
    names = [r[0] for r in rows]
    for i, (title, values) in enumerate(
        (
            ("multiply-adds per image (M)", [r[1] / 1e6 for r in rows]),
            (f"forward, batch {batch} (ms)", [r[3] for r in rows]),
            (f"forward + backward, batch {batch} (ms)", [r[4] for r in rows]),
        )
    ):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.bar(range(len(values)), values, color=["#888888", "#3a7dc9"])
        ax.set_xticks(range(len(values)), ["direct", "bottleneck"])
        ax.set_title(title, fontsize=9)
    fig.suptitle("GoogLeNet inception (3a), 5x5 branch: " + " vs ".join(names), fontsize=9)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="bottleneck",
    claim="a 1x1 convolution that reduces 192 maps to 16 before a 5x5 convolution cuts its "
    "cost about tenfold (120 M against 12.4 M multiply-adds)",
    source="Szegedy et al. 2015, 'Going deeper with convolutions', CVPR, Section 4 and "
    "Table 1 (inception 3a); the worked example of the lectures",
    run=run,
    budgets={
        "small": f"batch {BUDGETS['small'][0]}, best of {BUDGETS['small'][1]}",
        "paper": f"batch {BUDGETS['paper'][0]}, best of {BUDGETS['paper'][1]}",
    },
)
