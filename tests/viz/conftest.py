"""A LeNet-5 trained on real MNIST, shared by the visualisation tests.

`lenet5` (tanh, average pooling: smooth gradients, as in the course's figures),
trained for two passes over 12,000 digits: about 97% test accuracy, in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.sources import load_dataset
from cnnlab.models.classifier import Classifier
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer


@dataclass
class TrainedLeNet:
    run_dir: Path  # a finished run directory (checkpoints/best.safetensors inside)
    model: Classifier  # in eval mode
    images: torch.Tensor  # (16, 1, 32, 32) preprocessed test digits
    raw: torch.Tensor  # the same 16 digits as uint8 (16, 1, 28, 28)
    labels: torch.Tensor  # (16,)


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory, mnist_data_dir) -> TrainedLeNet:
    cfg = TrainConfig.from_recipe(
        "lenet5",
        get_spec("lenet5").recipe,
        data_dir=str(mnist_data_dir),
        epochs=2,
        limit_train=12_000,
        limit_test=1_000,
        quiet=True,
        seed=0,
    )
    run_dir = tmp_path_factory.mktemp("viz") / "run"
    Trainer(cfg, run_dir).fit()
    model, _ = load_checkpoint(run_dir)
    _, test = load_dataset("mnist", mnist_data_dir, download=False)
    raw = test.images[:16]
    return TrainedLeNet(run_dir, model, cfg.preprocessing(raw), raw, test.labels[:16])
