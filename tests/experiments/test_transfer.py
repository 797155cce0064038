"""`cnnlab experiment transfer` at its small budget, on real MNIST."""

from __future__ import annotations

import re

import pytest

from cnnlab.checkpoint import read_checkpoint

PERCENT = r" \| ([\d.]+)%"
ROW = r"\| ([\d,]+)" + PERCENT * 4 + r" \| ([+-][\d.]+) points \|"


@pytest.mark.slow
def test_the_table_gives_each_method_and_the_verdict_follows_it(mnist_env, run_experiment):
    verdict, report, out = run_experiment("transfer")
    rows = {
        int(n.replace(",", "")): tuple(float(v) for v in values)
        for n, *values in re.findall(ROW, report)
    }
    assert set(rows) == {10, 100, 1000}, report
    for scratch, frozen, convs, tuned, gain in rows.values():
        assert abs(scratch - min(frozen, convs, tuned) - gain) < 0.016  # each rounded to 0.01
        assert max(scratch, frozen, convs, tuned) < 60  # every network learned: chance is 80%
    assert rows[1000][0] < rows[10][0]  # from scratch, more examples help
    assert ("transfer won" in verdict) == (rows[10][4] > 0)
    assert ("transfer's gain shrank" in verdict) == (rows[1000][4] < rows[10][4])
    assert ("fine-tuning beat frozen features" in verdict) == (rows[1000][3] < rows[1000][1])
    assert (out / "transfer.png").is_file()

    # what each method froze is task A's, unchanged; fine-tuning moved everything
    last = "checkpoints/last.safetensors"
    task_a, _ = read_checkpoint(out / "task-a-digits-0-4" / last)
    frozen, meta = read_checkpoint(out / "frozen-features-10-per-class-seed0" / last)
    convs, _ = read_checkpoint(out / "frozen-convolutions-10-per-class-seed0" / last)
    tuned, _ = read_checkpoint(out / "fine-tuning-10-per-class-seed0" / last)
    assert meta.classes == ["5", "6", "7", "8", "9"]
    backbone = [k for k in task_a if not k.startswith("output.")]
    lower = [k for k in backbone if k.split(".")[0] in ("c1", "c3")]
    assert lower and all(frozen[k].equal(task_a[k]) for k in backbone)
    assert all(convs[k].equal(task_a[k]) for k in lower)
    assert not any(convs[k].equal(task_a[k]) for k in backbone if k.startswith("f6."))
    assert not any(tuned[k].equal(task_a[k]) for k in lower if k.endswith("weight"))
