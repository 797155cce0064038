"""`torchrun --nproc-per-node 2 -m cnnlab train` on the CPU (gloo), on a slice of real MNIST:
the same weights as one process with the same global batch, files from rank 0 only, and a
checkpoint that resumes with another number of processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.cli.main import main
from cnnlab.data.loader import batch_share
from cnnlab.training import trainer as trainer_module
from cnnlab.training.distributed import World

# 509 examples in global batches of 64: seven of 64 (32 + 32) and a last of 61 (31 + 30),
# so the loss weighting of unequal shares is exercised too; lenet5 has no batch norm
# or dropout, the two things that differ with the number of processes on the CPU
TRAIN = [
    "lenet5",
    *("--limit-train", "509", "--limit-test", "300", "--batch-size", "64"),
    *("--eval-batch-size", "128", "--schedule", "constant", "--seed", "5", "--quiet"),
]


def _torchrun(tmp: Path, data_dir: Path, *argv: str) -> Path:
    """Run `cnnlab train ARGV --out run` in two processes, each in its own working folder
    (tmp/rank0, tmp/rank1) and with its stdout in tmp/rankN.log; returns tmp/rank0/run."""
    for rank in (0, 1):
        (tmp / f"rank{rank}").mkdir()
    command = (
        'cd "rank$LOCAL_RANK" && exec "$0" -m cnnlab train "$@" --out run '
        '> "../rank$LOCAL_RANK.log"'
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CNNLAB_DATA": str(data_dir)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launch += ["--nproc-per-node", "2", "--no-python", "sh", "-c", command, sys.executable]
    done = subprocess.run(
        [*launch, *argv], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "rank0" / "run"


def _single(run_dir: Path, data_dir: Path, monkeypatch, *argv: str) -> Path:
    """The same command in this process (without the report's figures, to save time)."""
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    monkeypatch.setattr(trainer_module, "write_inspection_figures", lambda *a, **k: [])
    assert main(["train", *argv, "--out", str(run_dir)]) == 0
    return run_dir


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / "last.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        difference = (wa[key] - wb[key]).abs().max().item()
        assert torch.allclose(wa[key], wb[key], rtol=1e-4, atol=1e-5), (key, difference)


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(("n", "size"), [(64, 2), (61, 2), (7, 3), (2, 2)])
def test_each_process_takes_a_contiguous_share_and_the_weights_make_the_global_mean(n, size):
    shares = [batch_share(n, rank, size) for rank in range(size)]
    assert [s.start for s in shares] == [0] + [s.stop for s in shares[:-1]]
    assert shares[-1].stop == n
    lengths = [s.stop - s.start for s in shares]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    # DDP averages the processes' weighted mean losses: the mean over the global batch
    losses = torch.rand(n, dtype=torch.float64)
    worlds = [World(size, rank) for rank in range(size)]
    averaged = sum(w.share_weight(n) * losses[w.share(n)].mean() for w in worlds) / size
    assert averaged.item() == pytest.approx(losses.mean().item())


def test_two_processes_train_as_one_with_the_same_global_batch(
    tmp_path, mnist_data_dir, monkeypatch
):
    two = _torchrun(tmp_path, mnist_data_dir, *TRAIN, "--epochs", "2")
    one = _single(tmp_path / "one", mnist_data_dir, monkeypatch, *TRAIN, "--epochs", "2")
    _assert_same_weights(two, one)
    for row_two, row_one in zip(_metrics(two), _metrics(one), strict=True):
        for key in ("train_top1_error", "test_top1_error", "test_top5_error", "lr"):
            assert row_two[key] == row_one[key], key  # summed over both processes
        for key in ("train_loss", "test_loss"):
            assert float(row_two[key]) == pytest.approx(float(row_one[key]), rel=1e-5), key
    # rank 0 alone printed and wrote the run; rank 1's working folder stayed empty
    assert list((tmp_path / "rank1").iterdir()) == []
    assert (tmp_path / "rank1.log").read_text() == ""
    log = (tmp_path / "rank0.log").read_text()
    assert "epoch   2/2" in log and "report: run/report.md" in log
    for name in ("config.json", "report.md", "curves.png", "checkpoints/last.state.safetensors"):
        assert (two / name).is_file(), name
    report = (two / "report.md").read_text()
    assert "torchrun --nproc-per-node 2 -m cnnlab train lenet5" in report
    assert "in 2 processes, DistributedDataParallel over gloo" in report


def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path, mnist_data_dir, monkeypatch):
    # augmented: each process distorts the whole global batch as one process would, then
    # keeps its share, so the two-process epoch equals the one-process epoch
    augmented = [*TRAIN, "--augment", "crop:2", "affine:lecun"]
    cut = _torchrun(tmp_path, mnist_data_dir, *augmented, "--epochs", "1")
    whole = _single(tmp_path / "whole", mnist_data_dir, monkeypatch, *augmented, "--epochs", "2")
    assert main(["train", "--resume", str(cut), "--epochs", "2"]) == 0
    _assert_same_weights(cut, whole)
    assert [r["test_top1_error"] for r in _metrics(cut)] == [
        r["test_top1_error"] for r in _metrics(whole)
    ]
