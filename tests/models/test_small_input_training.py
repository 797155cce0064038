"""Every small-input variant, and the papers' own CIFAR networks, train on real MNIST.

One epoch on a slice of the real training set (padded to 32x32, one channel),
then the checkpoint the run wrote rebuilds a model that classifies real test digits.
"""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab import get_spec, list_models
from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.preprocessing import MNIST_32
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

# the `_small` variants, and the smallest CIFAR network of each family that has them
SMALL_INPUT = [*list_models("*_small"), "resnet20", "densenet_bc100_k12"]


def test_every_family_with_an_imagenet_stem_has_a_small_input_variant():
    imagenet = {get_spec(n).family for n in list_models() if get_spec(n).input_size[1] >= 224}
    small = {get_spec(n).family for n in SMALL_INPUT}
    assert imagenet <= small


@pytest.mark.parametrize("name", SMALL_INPUT)
def test_trains_one_epoch_on_real_mnist(mnist_env, tmp_path, name):
    assert get_spec(name).input_size[1:] == (32, 32)
    cfg = TrainConfig.from_recipe(
        name,
        get_spec(name).recipe,
        preprocessing=MNIST_32,  # the CIFAR networks' recipes normalise three channels
        epochs=1,
        limit_train=128,
        limit_test=64,
        batch_size=32,
        quiet=True,
        threads=2,
        seed=0,
    )
    result = Trainer(cfg, tmp_path / "run").fit()
    (row,) = result.history
    assert math.isfinite(row["train_loss"]) and 0.0 <= row["test_top1_error"] <= 1.0
    model, meta = load_checkpoint(tmp_path / "run")
    assert meta.model == name and meta.in_chans == 1 and meta.num_classes == 10
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
