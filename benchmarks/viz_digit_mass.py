"""Measurement: how much of each explanation map lies on the digit, for a trained LeNet-5.

Trains a LeNet-5 on real MNIST (by default `lenet5`, two passes over 12,000 digits,
seed 0, one thread: the model of tests/viz/conftest.py and docs/figures), explains the
first 16 test digits as their true class, and reports the share of each map's positive
mass on the digit's ink (pixels > 0 after padding 28 -> 32, dilated by one pixel),
beside the share a uniform map would have. Writes
benchmarks/results/viz_digit_mass.md (viz_digit_mass-MODEL.md for another setting).

    python benchmarks/viz_digit_mass.py [--data DIR]
    python benchmarks/viz_digit_mass.py --model lenet5_modern --epochs 4 --limit-train 60000
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
    parser.add_argument("--model", default="lenet5", choices=("lenet5", "lenet5_modern"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit-train", type=int, default=12_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = get_spec(args.model).recipe
        cfg = TrainConfig.from_recipe(
            args.model, recipe, data_dir=args.data, epochs=args.epochs,
            limit_train=args.limit_train, quiet=True, seed=0, threads=1,
        )  # fmt: skip
        result = Trainer(cfg, Path(tmp) / "run").fit()
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
    default = grad_cam(model, x, labels).layer
    for layer in ("s4", "c3", "s2", "c1"):
        named = f"Grad-CAM at {layer}{' (the default layer)' if layer == default else ''}"
        rows.append((named, share(grad_cam(model, x, labels, layer).map)))
    rows.append(("saliency", share(explain(model, x, "saliency", labels).maps)))
    rows.append(("guided Grad-CAM", share(explain(model, x, "guided-gradcam", labels).maps)))
    for patch in (8, 4):
        drop = clean - occlusion(model, x, labels, patch=patch, stride=patch // 2)
        rows.append((f"occlusion drop, patch {patch}, stride {patch // 2}", share(drop)))
    default_setting = (args.model, args.epochs, args.limit_train) == ("lenet5", 2, 12_000)
    flags = "" if default_setting else (
        f" --model {args.model} --epochs {args.epochs} --limit-train {args.limit_train}"
    )  # fmt: skip
    test_error = result.final["test_top1_error"]
    lines = [
        "# Share of each explanation map on the digit (trained LeNet-5, 16 MNIST test digits)",
        "",
        f"Command: `python benchmarks/viz_digit_mass.py{flags}`; the model: `{args.model}`, "
        f"{args.epochs} passes over {args.limit_train:,} MNIST digits, seed 0, one CPU thread "
        f"(test error {test_error:.2%}). Digit = ink after padding to 32, dilated by one pixel; "
        "share = positive map mass on it, averaged over the 16 digits.",
        "",
        "| map | share on the digit |",
        "|---|---:|",
        *[f"| {name} | {value:.3f} |" for name, value in rows],
        "",
    ]
    path = RESULTS if default_setting else RESULTS.with_name(f"viz_digit_mass-{args.model}.md")
    path.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
