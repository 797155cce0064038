"""The example figures of docs/looking_inside.md, from a LeNet-5 trained on real MNIST.

Trains `lenet5` (two passes over 12,000 MNIST digits, seed 0: the model of
tests/viz/conftest.py, a few seconds on a CPU) unless given a checkpoint, and
writes the PNGs beside this file:

    python docs/figures/make_viz_examples.py [--checkpoint RUN_OR_FILE] [--data DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.sources import load_dataset
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer
from cnnlab.viz.class_model import class_models, plot_class_models
from cnnlab.viz.explain import METHODS, explanation_figure
from cnnlab.viz.feature_maps import feature_maps, plot_feature_maps
from cnnlab.viz.filters import plot_filters
from cnnlab.viz.overlay import to_display
from cnnlab.viz.save import save_figure

HERE = Path(__file__).resolve().parent


def train(data: Path, run_dir: Path) -> Path:
    cfg = TrainConfig.from_recipe(
        "lenet5",
        get_spec("lenet5").recipe,
        data_dir=str(data),
        epochs=2,
        limit_train=12_000,
        limit_test=1_000,
        quiet=True,
        seed=0,
    )
    Trainer(cfg, run_dir).fit()
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a run directory or checkpoint file")
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "datasets")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model, meta = load_checkpoint(args.checkpoint or train(args.data, Path(tmp) / "run"))
    prep, names = meta.preprocessing, meta.classes
    _, test = load_dataset("mnist", args.data, download=False)
    x = prep(test.images[:4])  # a 7, a 2, a 1 and a 0
    figures = {
        "viz_filters.png": plot_filters(model, title="LeNet-5 trained on MNIST: C1"),
        "viz_feature_maps.png": plot_feature_maps(
            feature_maps(model, x[:1]), title="LeNet-5 on a test 7"
        ),
        "viz_class_models.png": plot_class_models(
            to_display(class_models(model), prep, stretch=True),
            names,
            title="LeNet-5 class models (Simonyan et al. 2013)",
        ),
        "viz_explanations.png": explanation_figure(
            model, x, prep, names, METHODS, title="LeNet-5: what the prediction rests on"
        ),
    }
    for name, fig in figures.items():
        print("wrote", save_figure(fig, HERE / name, dpi=90))


if __name__ == "__main__":
    main()
