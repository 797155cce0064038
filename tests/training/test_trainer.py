"""The trainer on slices of real MNIST: it learns, it is deterministic, it resumes exactly."""

from __future__ import annotations

import csv

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.data.augment import Augment
from cnnlab.errors import CnnlabError
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer


def _config(model: str = "lenet5_modern", **kw) -> TrainConfig:
    settings = dict(
        epochs=2, limit_train=512, limit_test=200, batch_size=64, quiet=True, threads=2, seed=3
    )
    settings.update(kw)
    return TrainConfig.from_recipe(model, get_spec(model).recipe, **settings)


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # timings differ between runs; everything else must not
        del row["images_per_s"], row["epoch_time_s"]
    return rows


@pytest.mark.parametrize(
    ("model", "optimizer", "lr", "epochs"),
    # lenet5_1998 first sits on a plateau (every F6 state near the mean prototype), then its
    # gradient spikes on the way out: clipping keeps full-batch steps stable
    [("lenet5", "adam", 3e-3, 60), ("lenet5_1998", "sgd", 0.03, 150)],
)
def test_overfits_a_small_batch(mnist_env, tmp_path, model, optimizer, lr, epochs):
    cfg = _config(
        model,
        limit_train=32,
        batch_size=32,
        epochs=epochs,
        optimizer=optimizer,
        lr=lr,
        momentum=0.0,
        schedule="constant",
        limit_test=32,
        grad_clip=10.0,
    )
    result = Trainer(cfg, tmp_path / "run").fit()
    assert result.final["train_top1_error"] == 0.0
    assert result.history[-1]["train_loss"] < 0.2 * result.history[0]["train_loss"]


def test_same_seed_gives_the_same_metrics_to_the_last_digit(mnist_env, tmp_path):
    Trainer(_config(), tmp_path / "a").fit()
    Trainer(_config(), tmp_path / "b").fit()
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    Trainer(_config(seed=4), tmp_path / "c").fit()
    assert _metrics(tmp_path / "a") != _metrics(tmp_path / "c")


class _Crash(Exception):
    pass


@pytest.mark.parametrize("augment", [(), ("crop:2", "flip", "affine:lecun", "elastic", "pca")])
def test_resumed_run_equals_an_uninterrupted_one_bit_for_bit(
    mnist_env, tmp_path, monkeypatch, augment
):
    # batch norm and dropout: RNG and running statistics must carry over; augmentation is
    # seeded by (seed, epoch, step)
    cfg = _config(epochs=3, augment=augment)
    Trainer(cfg, tmp_path / "whole").fit()

    def crash_after_first_epoch(self, row):
        if row["epoch"] == 1:
            raise _Crash

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_print_epoch", crash_after_first_epoch)
        with pytest.raises(_Crash):
            Trainer(cfg, tmp_path / "cut").fit()
    resumed = Trainer(cfg, tmp_path / "cut")
    assert resumed.restore() and resumed.start_epoch == 1
    resumed.fit()
    whole = load_file(tmp_path / "whole" / "checkpoints" / "last.safetensors")
    cut = load_file(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert _metrics(tmp_path / "whole") == _metrics(tmp_path / "cut")


def test_augment_is_checked_early_and_saved_in_config_json():
    with pytest.raises(CnnlabError, match="--augment 'warp'"):
        _config(augment=["warp"])
    cfg = _config(augment=["crop:2", "flip"])  # a list, as argparse gives it
    assert cfg.augment == ("crop:2", "flip") == TrainConfig.from_json(cfg.to_json()).augment


def test_augmentation_acts_on_training_batches_only(mnist_env, tmp_path, monkeypatch):
    calls = []
    original = Augment.__call__

    def spy(self, x, *, seed, epoch, step):
        calls.append((seed, epoch, step, x.shape[0]))
        return original(self, x, seed=seed, epoch=epoch, step=step)

    monkeypatch.setattr(Augment, "__call__", spy)
    cfg = _config(epochs=2, limit_train=96, val_split=16, limit_test=50, augment=("flip",))
    Trainer(cfg, tmp_path / "run").fit()
    # 80 training examples in batches of 64, per epoch; no validation or test batch
    assert calls == [(3, 0, 0, 64), (3, 0, 1, 16), (3, 1, 0, 64), (3, 1, 1, 16)]


def test_run_directory_holds_everything_the_report_names(mnist_env, tmp_path):
    run = tmp_path / "run"
    Trainer(_config(epochs=1, val_split=100), run, command="cnnlab train lenet5_modern").fit()
    for name in (
        "config.json",
        "metrics.csv",
        "curves.png",
        "confusion.png",
        "report.md",
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.safetensors",
    ):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "cnnlab train lenet5_modern" in report and "Test top-1 error" in report
    assert _metrics(run)[0]["val_top1_error"] != ""


def test_a_diverging_run_stops_with_a_clear_error(mnist_env, tmp_path):
    cfg = _config(optimizer="sgd", lr=1e30, momentum=0.0, schedule="constant", epochs=1)
    with pytest.raises(CnnlabError, match="training loss became"):
        Trainer(cfg, tmp_path / "run").fit()
