"""`cnnlab experiment dropout` at its small budget, on real MNIST."""

from __future__ import annotations

import re


def test_the_report_gives_both_gaps_and_the_verdict_follows_them(mnist_env, run_experiment):
    verdict, report, out = run_experiment("dropout")
    rows = dict(
        (rate, (float(train), float(test), float(gap)))
        for rate, train, test, gap in re.findall(
            r"\| (0|0\.5) \| ([\d.]+)% \| ([\d.]+)% \| (-?[\d.]+)% \|", report
        )
    )
    assert set(rows) == {"0", "0.5"}
    for train, test, gap in rows.values():
        assert abs((test - train) - gap) < 0.011 and test < 20  # both learned
    narrowed = rows["0.5"][2] < rows["0"][2]
    assert ("dropout 0.5 narrowed the gap" in verdict) == narrowed
    assert rows["0"][0] < rows["0"][1]  # without dropout it fits its 1,000 digits better
    assert (out / "dropout.png").is_file()
