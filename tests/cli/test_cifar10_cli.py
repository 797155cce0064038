"""The CLI on CIFAR-10: `data verify cifar10`, and a run on the JPEG copy that says so in
its checkpoint, its report and its evaluation (a tiny synthetic copy; the real zip's
figures are in the benchmarks)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli.main import main
from cnnlab.data.cifar10 import CLASSES


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_data_verify_cifar10_on_the_real_zip_and_on_an_empty_folder(
    cifar10_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = _run(capsys, "data", "verify", "cifar10", "--data-dir", str(cifar10_data_dir))
    assert code == 0 and "cifar10-jpeg.zip" in out and "train 50,000, test 10,000" in out
    code, out, _ = _run(capsys, "data", "verify", "cifar10", "--data-dir", str(tmp_path))
    assert code == 2 and "FAILED" in out


def test_a_run_on_the_jpeg_copy_is_labelled_as_such_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    zip_path = tmp_path / "data" / "cifar10-jpeg" / "cifar10-jpeg.zip"
    zip_path.parent.mkdir(parents=True)
    with zipfile.ZipFile(zip_path, "w") as zf:
        for split, count in (("train", 3), ("test", 1)):
            for name in CLASSES:
                for i in range(count):
                    buffer = io.BytesIO()
                    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(buffer, "JPEG")
                    zf.writestr(f"{split}/{name}/{i:04}.jpg", buffer.getvalue())
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    data = ["--data", "cifar10", "--data-dir", str(tmp_path / "data")]
    run_dir = tmp_path / "run"
    code, _, _ = _run(
        capsys, "train", "resnet20", *data, "--epochs", "1", "--batch-size", "10",
        "--augment", "crop:4", "flip", "--out", str(run_dir), "--quiet",
    )  # fmt: skip
    assert code == 0
    _, meta = load_checkpoint(run_dir)
    assert (meta.dataset, meta.data_source) == ("cifar10", "cifar10-jpeg")
    report = (run_dir / "report.md").read_text()
    assert "read from cifar10-jpeg (the JPEG re-encoded copy of CIFAR-10" in report
    assert "Augmentation of training batches: crop:4 flip" in report

    code, out, _ = _run(capsys, "eval", str(run_dir), "--data-dir", str(tmp_path / "data"))
    assert code == 0 and "resnet20 on cifar10-jpeg (the JPEG re-encoded copy" in out
    code, out, _ = _run(
        capsys, "eval", str(run_dir), "--data-dir", str(tmp_path / "data"), "--format", "json"
    )
    result = json.loads(out)
    assert (result["data"], result["data_source"], result["examples"]) == (
        "cifar10",
        "cifar10-jpeg",
        10,
    )
