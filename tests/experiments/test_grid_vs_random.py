"""`cnnlab experiment search` at its small budget, on real MNIST."""

from __future__ import annotations

import re

from cnnlab.experiments.grid_vs_random import space


def test_the_grid_tries_three_learning_rates_and_random_nine(mnist_env, run_experiment):
    verdict, report, out = run_experiment("search")
    assert re.fullmatch(
        r"search: random search found a lower validation error than the grid in [01] of 1 "
        r"comparison at the same budget of 9 trials",
        verdict,
    )
    row = re.search(r"\| 0 \| ([\d.]+)% \| 3 \| ([\d.]+)% \| 9 \|", report)
    assert row, report  # 3 distinct learning rates on the grid, 9 at random
    grid, random = (float(v) for v in row.groups())
    assert (random < grid) == verdict.endswith(
        "in 1 of 1 comparison at the same budget of 9 trials"
    )
    assert 0 < min(grid, random) < 50  # at least one trial learned
    assert (out / "search.png").is_file()
    for sampler in ("grid", "random"):  # each search kept its study, table and best config
        assert (out / f"{sampler}-seed0" / "results.md").is_file()
        assert (out / f"{sampler}-seed0" / "best.json").is_file()


def test_the_grid_spans_the_ranges():
    grid = space(3).grid()
    assert grid["lr"][0] == 1e-4 and abs(grid["lr"][-1] - 0.3) < 1e-12
    assert grid["weight_decay"] == [0.0, 5e-7, 1e-6]
