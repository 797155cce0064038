"""Normalising by the training split's own statistics, asked for or needed."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli.main import main
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer


def test_a_recipe_for_three_channels_on_grey_digits_uses_the_datas_statistics(mnist_env, tmp_path):
    recipe = get_spec("resnet20").recipe
    assert len(recipe.preprocessing.mean) == 3  # CIFAR-10's
    cfg = TrainConfig.from_recipe("resnet20", recipe, limit_train=256, epochs=1, quiet=True)
    trainer = Trainer(cfg, tmp_path / "run")
    (mean,), (std,) = trainer.cfg.preprocessing.mean, trainer.cfg.preprocessing.std
    assert mean == pytest.approx(0.13, abs=0.01) and std == pytest.approx(0.31, abs=0.01)


def test_dataset_stats_from_the_command_line_reach_the_checkpoint(mnist_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    argv = ["train", "lenet5_modern", "--dataset-stats", "--epochs", "1", "--quiet"]
    argv += ["--limit-train", "512", "--limit-test", "64", "--data-dir", str(mnist_data_dir)]
    assert main([*argv, "--out", str(run_dir)]) == 0
    pre = json.loads((run_dir / "config.json").read_text())["preprocessing"]
    first_512 = TrainConfig.from_recipe("lenet5_modern", get_spec("lenet5_modern").recipe)
    assert pre["mean"] != list(first_512.preprocessing.mean)  # not the recipe's 0.1307
    assert pre["mean"][0] == pytest.approx(0.13, abs=0.01) and pre["pad_to"] == 32
