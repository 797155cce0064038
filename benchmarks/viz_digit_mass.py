"""Measurement: how much of each explanation map lies on the digit, for a trained LeNet-5.

Trains `lenet5` on real MNIST (two passes over 12,000 digits, seed 0, one thread:
the model of tests/viz/conftest.py and docs/figures), explains the first 16 test
digits as their true class, and reports the share of each map's positive mass
on the digit's ink (pixels > 0 after padding 28 -> 32, dilated by one pixel),
beside the share a uniform map would have. Writes
benchmarks/results/viz_digit_mass.md.

    python benchmarks/viz_digit_mass.py [--data DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.sources import load_dataset
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer
from cnnlab.viz.explain import explain
from cnnlab.viz.gradcam import grad_cam
from cnnlab.viz.occlusion import occlusion

RESULTS = Path(__file__).resolve().parent / "results" / "viz_digit_mass.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/datasets")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = get_spec("lenet5").recipe
        cfg = TrainConfig.from_recipe(
            "lenet5", recipe, data_dir=args.data, epochs=2, limit_train=12_000,
            limit_test=1_000, quiet=True, seed=0, threads=1,
        )  # fmt: skip
        Trainer(cfg, Path(tmp) / "run").fit()
        model, meta = load_checkpoint(Path(tmp) / "run")
    _, test = load_dataset("mnist", args.data, download=False)
    raw, labels = test.images[:16], test.labels[:16]
    x = meta.preprocessing(raw)
    ink = (F.pad(raw, (2, 2, 2, 2)) > 0).float()  # (16, 1, 32, 32)
    digit = F.max_pool2d(ink, 3, stride=1, padding=1)[:, 0] > 0

    def share(maps: torch.Tensor) -> float:
        m = maps.clamp(min=0)
        return ((m * digit).sum((1, 2)) / m.sum((1, 2)).clamp_min(1e-12)).mean().item()

    clean = model(x).softmax(1).gather(1, labels[:, None])[:, :, None].detach()
    rows = [("uniform map (for reference)", digit.float().mean().item())]
    for layer in ("s4", "c3", "s2", "c1"):
        default = " (the default layer)" if layer == "s4" else ""
        rows.append((f"Grad-CAM at {layer}{default}", share(grad_cam(model, x, labels, layer).map)))
    rows.append(("saliency", share(explain(model, x, "saliency", labels).maps)))
    rows.append(("guided Grad-CAM", share(explain(model, x, "guided-gradcam", labels).maps)))
    for patch in (8, 4):
        drop = clean - occlusion(model, x, labels, patch=patch, stride=patch // 2)
        rows.append((f"occlusion drop, patch {patch}, stride {patch // 2}", share(drop)))
    lines = [
        "# Share of each explanation map on the digit (trained LeNet-5, 16 MNIST test digits)",
        "",
        "Command: `python benchmarks/viz_digit_mass.py`; the model: `lenet5`, two passes over "
        "12,000 MNIST digits, seed 0, one CPU thread. Digit = ink after padding to 32, dilated "
        "by one pixel; share = positive map mass on it, averaged over the 16 digits.",
        "",
        "| map | share on the digit |",
        "|---|---:|",
        *[f"| {name} | {value:.3f} |" for name, value in rows],
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
