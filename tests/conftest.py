"""Shared fixtures: where the real datasets are.

The real MNIST is read from $CNNLAB_DATA when set, else from `../shared/datasets`
beside the repository. Tests that need it are skipped when it is absent, except
on CI (CI=true), where its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    """A data folder holding the real MNIST files in its `mnist/` subfolder."""
    env = os.environ.get("CNNLAB_DATA")
    folder = Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"
    if not (folder / "mnist").is_dir():
        message = f"real MNIST not found in {folder / 'mnist'} (set CNNLAB_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture
def mnist_env(mnist_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CNNLAB_DATA at the real MNIST for the duration of one test."""
    monkeypatch.setenv("CNNLAB_DATA", str(mnist_data_dir))
    return mnist_data_dir


@pytest.fixture(scope="session")
def cifar10_data_dir() -> Path:
    """A data folder holding the CIFAR-10 JPEG zip at `cifar10-jpeg/cifar10-jpeg.zip`."""
    env = os.environ.get("CNNLAB_DATA")
    folder = Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"
    if not (folder / "cifar10-jpeg" / "cifar10-jpeg.zip").is_file():
        message = f"CIFAR-10 JPEG zip not found in {folder / 'cifar10-jpeg'} (set CNNLAB_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture
def cifar10_env(cifar10_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CNNLAB_DATA at the real CIFAR-10 (JPEG copy) for the duration of one test."""
    monkeypatch.setenv("CNNLAB_DATA", str(cifar10_data_dir))
    return cifar10_data_dir
