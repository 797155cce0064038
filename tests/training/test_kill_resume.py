"""The crash-safety guarantee, proven on real processes: `cnnlab train` killed with SIGKILL
at 10 random moments, some of them inside a checkpoint write, and resumed each time, ends
with weights bit-identical to an uninterrupted run with the same seed.

The figures (kills, where they landed) go to kill_resume.json in $CNNLAB_RELIABILITY_OUT
(a folder) when it is set, for docs/reliability.md, else beside the test's files.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.atomic_file import PAUSE_ENV
from cnnlab.training.trainer import STATE_FILE
from cnnlab.training.training_state import load_training_state

# 1,280 examples in batches of 32: 40 steps an epoch, 160 in all, a state saved every 2;
# batch norm, dropout and augmentation draw on every kind of saved or derived randomness
TRAIN = [
    *("lenet5_modern", "--limit-train", "1280", "--limit-test", "200", "--batch-size", "32"),
    *("--epochs", "4", "--augment", "crop:2", "flip", "--checkpoint-every", "2"),
    *("--seed", "11", "--threads", "1", "--quiet"),
]
KILLS = 10
STEPS, EPOCH_STEPS = 160, 40
# kill k waits for the saved state to reach a step (random, spread over the run), then for
# a write of the training state (INTO_WRITES), for a write of the end of epoch 2's weights
# (INTO_EPOCH_END: its state is not yet written), or a random delay (the others)
INTO_WRITES, INTO_EPOCH_END = {1, 4, 8}, 5
PAUSE_S = 0.05  # each write pauses halfway (test hook), so that a kill can land inside it
MAX_DELAY_S = 0.4


def _start(tmp: Path, env: dict[str, str], argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "train", *argv],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _identity(path: Path) -> tuple[int, int] | None:
    """The file now at `path` (an atomic rename puts a new one there)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _wait(condition, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll until `condition()`; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError("the training process made no progress")
        time.sleep(0.001)
    return True


def _plan(rng: random.Random) -> list[int]:
    """The step each kill waits for: 5 in epochs 1-2, the end of epoch 2, 4 in epochs 3-4."""
    end = 2 * EPOCH_STEPS - 2  # the last state saved within epoch 2
    early = rng.sample(range(2, end, 2), INTO_EPOCH_END)
    late = rng.sample(range(end + 4, STEPS - 8, 2), KILLS - INTO_EPOCH_END - 1)
    return [*sorted(early), end, *sorted(late)]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        del row["images_per_s"], row["epoch_time_s"]
    return rows


def _same(a: Path, b: Path) -> bool:
    wa, wb = load_file(a), load_file(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_sigkill_at_10_random_moments_then_resume_gives_bit_identical_weights(
    mnist_data_dir, tmp_path
):
    started = time.monotonic()
    env = {**os.environ, "CNNLAB_DATA": str(mnist_data_dir), "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "whole"
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", *TRAIN, "--out", str(reference)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    killed_env = {**env, PAUSE_ENV: str(PAUSE_S)}
    run = tmp_path / "killed"
    state, checkpoints = run / "checkpoints" / STATE_FILE, run / "checkpoints"
    moments: list[dict] = []
    argv = [*TRAIN, "--out", str(run)]
    for k, target in enumerate(_plan(rng)):
        seen = [_identity(state)]

        def reached(target: int = target, seen: list = seen) -> bool:
            """A new state was saved in this session, at `target` or later."""
            now = _identity(state)
            if now in (None, seen[0]):
                return False
            seen[0] = now
            return load_training_state(state)["step"] >= target

        proc = _start(tmp_path, killed_env, argv, tmp_path / f"session{k}.log")
        argv = ["--resume", str(run)]
        if not _wait(reached, proc):
            break  # finished before a kill: the assertion below says so
        t0 = time.monotonic()
        if k in INTO_WRITES:
            aim = "a write of the training state"
            _wait(lambda: any(checkpoints.glob(".*.tmp")), proc)
        elif k == INTO_EPOCH_END:
            aim = "a write of the end of an epoch's weights"
            _wait(lambda: any(checkpoints.glob(".last.safetensors.*.tmp")), proc)
        else:
            aim = "a random moment"
            time.sleep(rng.uniform(0.0, MAX_DELAY_S))
        proc.send_signal(signal.SIGKILL)
        killed_after = time.monotonic() - t0
        if proc.wait() != -signal.SIGKILL:
            break  # it had ended: the assertions below say how
        interrupted = sorted(p.name for p in checkpoints.glob(".*.tmp"))  # killed mid-write
        saved = load_training_state(state)  # the last complete state, verified
        moments.append(
            {
                "kill": k + 1,
                "aimed_at": aim,
                "after_the_state_of_step": target,
                "seconds_after_it": round(killed_after, 3),
                "during_a_checkpoint_write": bool(interrupted),
                # .NAME.XXXXXXXX.tmp: NAME
                "files_being_written": [name[1:].rsplit(".", 2)[0] for name in interrupted],
                "resumes_from": {
                    "step": saved["step"],
                    "epochs_done": saved["epoch"],
                    "batches_done_in_the_next": (saved["progress"] or {"batch": 0})["batch"],
                },
            }
        )
    final = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--resume", str(run)],
        cwd=tmp_path, env=killed_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    identical = final.returncode == 0 and all(
        _same(reference / "checkpoints" / name, checkpoints / name)
        for name in ("last.safetensors", "best.safetensors")
    )
    same_metrics = final.returncode == 0 and _metrics(reference) == _metrics(run)
    record = {
        "test": "tests/training/test_kill_resume.py::"
        "test_sigkill_at_10_random_moments_then_resume_gives_bit_identical_weights",
        "command": "cnnlab train " + " ".join(TRAIN),
        "steps": STEPS,
        "kills": len(moments),
        "kills_during_a_checkpoint_write": sum(m["during_a_checkpoint_write"] for m in moments),
        "kills_resumed_within_an_epoch": sum(
            m["resumes_from"]["batches_done_in_the_next"] > 0 for m in moments
        ),
        "final_weights_bit_identical": identical,
        "metrics_identical": same_metrics,
        "moments_seed": seed,
        "wall_s": round(time.monotonic() - started, 1),
        "moments": moments,
    }
    out = Path(os.environ.get("CNNLAB_RELIABILITY_OUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kill_resume.json").write_text(json.dumps(record, indent=2) + "\n")

    assert final.returncode == 0, final.stderr[-3000:]
    assert len(moments) == KILLS, f"the run ended after {len(moments)} kills (seed {seed})"
    assert record["kills_during_a_checkpoint_write"] >= len(INTO_WRITES) + 1, record
    assert identical and same_metrics, f"seed {seed}: {record}"
    assert not any(checkpoints.glob(".*.tmp"))  # the resumed runs cleared what kills left
