"""`cnnlab finetune` end to end on slices of real MNIST: train, fine-tune the head only,
resume the fine-tuning run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, mnist_data_dir):
    """A lenet5_modern trained for one epoch on 4,000 MNIST digits."""
    run_dir = tmp_path_factory.mktemp("source") / "run"
    argv = ["train", "lenet5_modern", "--data-dir", str(mnist_data_dir), "--epochs", "1"]
    argv += ["--limit-train", "4000", "--limit-test", "500", "--out", str(run_dir)]
    assert main([*argv, "--quiet", "--seed", "1", "--threads", "1"]) == 0
    return run_dir


def _finetune(capsys, checkpoint, out, data_dir, *extra: str) -> tuple[int, str, str]:
    return run(
        capsys,
        "finetune",
        str(checkpoint),
        "--data-dir",
        str(data_dir),
        "--limit-train",
        "2000",
        "--limit-test",
        "500",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--seed",
        "2",
        "--threads",
        "1",
        *extra,
    )


def test_finetune_trains_the_head_only_and_leaves_the_rest_bit_identical(
    source_run, mnist_data_dir, tmp_path, capsys
):
    source = source_run / "checkpoints" / "best.safetensors"
    out = tmp_path / "ft"
    code, text, _ = _finetune(capsys, source_run, out, mnist_data_dir, "--freeze", "all-but-head")
    assert code == 0
    assert "freeze all-but-head: 850 trainable parameters (output)" in text
    assert "new classifier for 10 classes" in text and "test top-1 error" in text
    before = load_file(source)
    after = load_file(out / "checkpoints" / "last.safetensors")
    assert before.keys() == after.keys()
    for key in before:  # weights, biases, batch-norm statistics and counters alike
        assert torch.equal(after[key], before[key]) != key.startswith("output."), key
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"] == str(source) and config["model"] == "lenet5_modern"
    assert "Started from" in (out / "report.md").read_text()


def test_a_finetune_run_resumes_without_its_source(source_run, mnist_data_dir, tmp_path, capsys):
    copy = tmp_path / "source.safetensors"
    shutil.copy(source_run / "checkpoints" / "best.safetensors", copy)
    out = tmp_path / "ft"
    # constant: a resumed run keeps the schedule's original horizon (its saved state)
    extra = ("--freeze", "stages:3", "--backbone-lr-mult", "0.1", "--schedule", "constant")
    assert _finetune(capsys, copy, out, mnist_data_dir, *extra)[0] == 0
    first = load_file(out / "checkpoints" / "last.safetensors")
    copy.unlink()
    code, text, _ = run(capsys, "train", "--resume", str(out), "--epochs", "2", "--quiet")
    assert code == 0 and "resuming" in text and "after 2 epochs" in text
    second = load_file(out / "checkpoints" / "last.safetensors")
    for key in first:  # c1 and c3 (stages 1-3) stay frozen; c5, f6 and the head train
        assert torch.equal(second[key], first[key]) == key.startswith(("c1.", "c3.")), key


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--freeze", "stages:9"), "--freeze stages:9: LeNet5 has 5 stages"),
        (("--freeze", "top"), "expected none, all-but-head or stages:N"),
        (("--backbone-lr-mult", "-1"), "--backbone-lr-mult -1.0: expected a positive"),
    ],
)
def test_finetune_mistakes_are_one_line(
    source_run, mnist_data_dir, tmp_path, capsys, extra, message
):
    code, _, err = _finetune(capsys, source_run, tmp_path / "ft", mnist_data_dir, *extra)
    assert code == 2 and message in err and err.count("\n") == 1


def test_finetune_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "finetune", str(tmp_path / "none"))
    assert code == 2 and "no such checkpoint file or run directory" in err
