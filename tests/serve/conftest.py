"""Checkpoints and images for the server tests.

`lenet_checkpoint`: the paper's LeNet-5 (lenet5_1998: C3 table, RBF output) trained for
one pass over 6,000 real MNIST digits (batches of 32, about 10 s on one core; about
88% test accuracy); `served`: the real `cnnlab serve` command serving it on a free port;
`mnist_test_digits`: real MNIST test digits to send it.
"""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.mnist import load_mnist
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer


@pytest.fixture(scope="session")
def lenet_checkpoint(tmp_path_factory, mnist_data_dir) -> Path:
    cfg = TrainConfig.from_recipe(
        "lenet5_1998",
        get_spec("lenet5_1998").recipe,
        data_dir=str(mnist_data_dir),
        epochs=1,
        batch_size=32,
        limit_train=6_000,
        limit_test=500,
        quiet=True,
        seed=0,
    )
    run_dir = tmp_path_factory.mktemp("serve") / "lenet5_1998"
    Trainer(cfg, run_dir).fit()
    return run_dir / "checkpoints" / "best.safetensors"


@pytest.fixture(scope="session")
def mnist_test_digits(mnist_data_dir) -> tuple[np.ndarray, np.ndarray]:
    """The first 40 test digits, uint8 (40, 28, 28) white on black, and their labels."""
    _, test = load_mnist(mnist_data_dir, download=False)
    return test.images[:40, 0].numpy(), test.labels[:40].numpy()


@contextlib.contextmanager
def _serving(
    checkpoint: Path, log: Path, *options: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """`cnnlab serve CHECKPOINT --port 0 OPTIONS` as a subprocess, its stderr in `log`:
    (the process, its URL, the line it printed); terminated on leaving."""
    command = [sys.executable, "-m", "cnnlab", "serve", str(checkpoint), "--port", "0", *options]
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"serving on (http://\S+) \(", line)
        if match is None:
            pytest.fail(f"cnnlab serve did not start: {line!r} {log.read_text()}")
        yield proc, match.group(1), line
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="session")
def start_server():
    """`with start_server(checkpoint, log, *options, env=None) as (process, url, line)`."""
    return _serving


@pytest.fixture(scope="session")
def served(lenet_checkpoint, tmp_path_factory):
    """`cnnlab serve CHECKPOINT --port 0` as a subprocess: (its URL, the line it printed)."""
    with _serving(lenet_checkpoint, tmp_path_factory.mktemp("serve") / "stderr.txt") as served:
        yield served[1:]
