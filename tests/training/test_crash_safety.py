"""Checkpoints within epochs resume bit for bit; one process at a time writes a run; a NaN
loss stops the run at its step (exit code 3) or is skipped; a full disk is one clear error
that leaves the last checkpoint as it was. (Killing real processes: test_kill_resume.py.)"""

from __future__ import annotations

import csv
import errno
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.cli.main import main
from cnnlab.errors import CheckpointError, CnnlabError, NumericalError
from cnnlab.registry import get_spec
from cnnlab.training import losses
from cnnlab.training import trainer as trainer_module
from cnnlab.training.checkpoint_schedule import CheckpointSchedule
from cnnlab.training.config import TrainConfig
from cnnlab.training.run_lock import RunLock
from cnnlab.training.trainer import STATE_FILE, Trainer
from cnnlab.training.training_state import load_training_state

# 512 examples in batches of 64: 8 steps an epoch; lenet5_modern has batch norm and dropout
SETTINGS = dict(
    limit_train=512, limit_test=200, batch_size=64, quiet=True, threads=1, seed=3, epochs=2
)
CLI = [
    *("lenet5_modern", "--limit-train", "256", "--limit-test", "100", "--batch-size", "32"),
    *("--epochs", "2", "--seed", "3", "--threads", "1", "--quiet"),
]  # 8 steps an epoch


def _config(**kw) -> TrainConfig:
    return TrainConfig.from_recipe(
        "lenet5_modern", get_spec("lenet5_modern").recipe, **{**SETTINGS, **kw}
    )


@pytest.fixture(autouse=True)
def _no_inspection_figures(monkeypatch):
    """The report's saliency and Grad-CAM figures take time and prove nothing here."""
    monkeypatch.setattr(trainer_module, "write_inspection_figures", lambda *a, **k: [])


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # timings differ between runs; everything else must not
        del row["images_per_s"], row["epoch_time_s"]
    return rows


def _same_tensors(a, b) -> bool:
    wa, wb = load_file(a), load_file(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


class _Crash(Exception):
    pass


def test_checkpoints_within_epochs_resume_bit_for_bit(mnist_env, tmp_path, monkeypatch):
    cfg = _config(checkpoint_every=3, augment=("crop:2", "flip"))
    Trainer(cfg, tmp_path / "whole").fit()
    original = Trainer._save_progress
    steps = []

    def save_then_crash_at_the_second(self, epoch, progress):
        original(self, epoch, progress)
        steps.append(self.scheduler.last_epoch)
        if len(steps) % 2 == 0:
            raise _Crash

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_save_progress", save_then_crash_at_the_second)
        with pytest.raises(_Crash):  # saved at steps 3 and 6: stops within epoch 1
            Trainer(cfg, tmp_path / "cut").fit()
        resumed = Trainer(cfg, tmp_path / "cut")
        assert resumed.restore()
        assert resumed.resume_point == "in epoch 1 of 2, after batch 6 of 8 (step 6)"
        with pytest.raises(_Crash):  # saved at steps 9 and 12: stops within epoch 2
            resumed.fit()
    resumed = Trainer(cfg, tmp_path / "cut")
    assert resumed.restore()
    assert resumed.resume_point == "in epoch 2 of 2, after batch 4 of 8 (step 12)"
    resumed.fit()
    assert steps == [3, 6, 9, 12]
    for name in ("last.safetensors", "best.safetensors"):
        whole, cut = (tmp_path / run / "checkpoints" / name for run in ("whole", "cut"))
        assert _same_tensors(whole, cut), name
    assert _metrics(tmp_path / "whole") == _metrics(tmp_path / "cut")  # the running metrics too


def test_the_schedule_counts_steps_over_the_run_and_minutes_since_the_last_save():
    assert [s for s in range(1, 13) if CheckpointSchedule(every_steps=5).due(s)] == [5, 10]
    now = [0.0]
    schedule = CheckpointSchedule(every_minutes=2, clock=lambda: now[0])
    now[0] = 119.0
    assert not schedule.due(1)
    now[0] = 120.0
    assert schedule.due(2)
    schedule.saved()
    now[0] = 200.0
    assert not schedule.due(3)
    assert not any(CheckpointSchedule().due(s) for s in range(1, 100))


def test_bad_intervals_are_refused():
    with pytest.raises(CnnlabError, match="--checkpoint-every 0: expected >= 1"):
        _config(checkpoint_every=0)
    with pytest.raises(CnnlabError, match=r"--checkpoint-minutes -1\.0: expected > 0"):
        _config(checkpoint_minutes=-1.0)


def test_a_second_process_cannot_write_a_run_and_a_killed_holder_blocks_nothing(
    mnist_env, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(["train", *CLI, "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(run / "run.lock")], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"another process (pid {holder.pid})" in err
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert len(_metrics(run)) == 2


_HOLD_LOCK = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.seek(0); f.truncate(); f.write(f"{os.getpid()}\\n"); f.flush()
print("locked", flush=True)
time.sleep(600)
"""


def test_the_lock_is_held_while_training_and_let_go_after(mnist_env, tmp_path, monkeypatch):
    seen = []

    def print_epoch(self, row):
        with pytest.raises(CnnlabError, match="another process"):
            RunLock(self.run_dir).acquire()
        seen.append(row["epoch"])

    monkeypatch.setattr(Trainer, "_print_epoch", print_epoch)
    Trainer(_config(epochs=1), tmp_path / "run").fit()
    assert seen == [1]
    with RunLock(tmp_path / "run"):
        pass


def _nan_at(calls: set[int]):
    """A create_loss whose loss is NaN at these training calls (1-based, per trainer)."""
    create = losses.create_loss

    def create_loss(*args, **kwargs):
        loss_fn, count = create(*args, **kwargs), [0]

        def loss(logits, target):
            value = loss_fn(logits, target)
            if not torch.is_grad_enabled():  # evaluation
                return value
            count[0] += 1
            return value * float("nan") if count[0] in calls else value

        return loss

    return create_loss


def test_a_nan_loss_stops_the_run_at_its_step_with_exit_code_3(
    mnist_env, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    monkeypatch.setattr(trainer_module, "create_loss", _nan_at({7}))
    code = main(["train", *CLI, "--checkpoint-every", "2", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1, err
    for part in (
        "the training loss became nan at step 7 (epoch 1, batch 7 of 8)",
        "the last good checkpoint (after step 6)",
        "--lr",
        "--grad-clip",
        "--skip-nonfinite",
    ):
        assert part in err, part
    state = load_training_state(run / "checkpoints" / STATE_FILE)
    assert state["step"] == 6 and state["progress"]["batch"] == 6
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    # resumed with --skip-nonfinite: the same batch (the first of this session) is skipped
    monkeypatch.setattr(trainer_module, "create_loss", _nan_at({1}))
    assert main(["train", "--resume", str(run), "--skip-nonfinite"]) == 0
    out = capsys.readouterr().out
    assert "in epoch 1 of 2, after batch 6 of 8 (step 6)" in out
    assert "skipped 1 non-finite batches" in out  # printed, and counted in metrics.csv
    assert [row["skipped_batches"] for row in _metrics(run)] == ["1", "0"]


def test_skip_nonfinite_counts_the_batches_it_skips(mnist_env, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "create_loss", _nan_at({2, 5, 11}))
    result = Trainer(_config(skip_nonfinite=True), tmp_path / "run").fit()
    assert [row["skipped_batches"] for row in result.history] == [2, 1]
    weights = load_file(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.slow
def test_a_diverging_run_stops_the_same_under_python_dash_o(mnist_data_dir, tmp_path):
    """No `assert` does the checking: -O strips asserts, not this."""
    env = {**os.environ, "CNNLAB_DATA": str(mnist_data_dir), "OMP_NUM_THREADS": "1"}
    argv = [*CLI, "--optimizer", "sgd", "--lr", "1e30", "--schedule", "constant"]
    done = subprocess.run(
        [sys.executable, "-O", "-m", "cnnlab", "train", *argv, "--out", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("cnnlab: error: the ")
    assert "loss became" in done.stderr or "weights became" in done.stderr


def _fail_checkpoint_writes(monkeypatch):
    """ENOSPC at fsync, for the files of checkpoints/ only (metrics.csv still writes)."""
    fsync = os.fsync

    def full(fd):
        if "/checkpoints/." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)


def test_a_full_disk_is_one_clear_error_and_the_last_checkpoint_stays(
    mnist_env, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    assert main(["train", *CLI, "--epochs", "1", "--out", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    capsys.readouterr()
    with monkeypatch.context() as m:
        _fail_checkpoint_writes(m)
        assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert "/checkpoints/" in err and "the previous file there, if any, is kept" in err
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0  # and it resumes


def test_a_state_of_the_older_pickle_format_is_refused_clearly(mnist_env, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 1}, run / "checkpoints" / "last.state.pt")
    with pytest.raises(CheckpointError, match=r"last\.state\.pt: the training state of an older"):
        Trainer(_config(), run).restore()


def test_a_corrupted_state_is_refused_before_anything_is_restored(mnist_env, tmp_path):
    run = tmp_path / "run"
    Trainer(_config(epochs=1), run).fit()
    path = run / "checkpoints" / STATE_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    trainer = Trainer(_config(), run)
    with pytest.raises(CheckpointError, match="corrupted"):
        trainer.restore()
    assert trainer.start_epoch == 0 and trainer.history == []


def test_under_torchrun_checkpoints_within_epochs_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(CnnlabError, match="under torchrun"):
        Trainer(_config(checkpoint_every=5), "unused")


def test_a_checkpoint_is_never_saved_with_nan_weights(mnist_env, tmp_path, monkeypatch):
    original = Trainer._save_progress

    def poison_then_save(self, epoch, progress):
        with torch.no_grad():
            next(self.model.parameters())[0] = float("nan")
        original(self, epoch, progress)

    monkeypatch.setattr(Trainer, "_save_progress", poison_then_save)
    with pytest.raises(NumericalError, match="weights became NaN or infinite after step 3"):
        Trainer(_config(checkpoint_every=3), tmp_path / "run").fit()
    assert not (tmp_path / "run" / "checkpoints" / STATE_FILE).exists()


def test_killed_writes_leave_only_temporaries_that_the_next_run_clears(mnist_env, tmp_path):
    run = tmp_path / "run"
    Trainer(_config(epochs=1), run).fit()
    stale = run / "checkpoints" / f".{STATE_FILE}.abc123.tmp"
    stale.write_bytes(b"half a state")
    resumed = Trainer(_config(epochs=2), run)
    assert resumed.restore()
    resumed.fit()
    assert not stale.exists()
