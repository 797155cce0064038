"""`cnnlab bench`: every figure present and sane, FLOP accounting, the peak cache, errors.

Tiny settings throughout: these tests check what the command reports, not how fast it is.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.analysis.paper import measure
from cnnlab.cli.main import main
from cnnlab.registry import create_model
from cnnlab.speed import peak
from cnnlab.speed.peak import MachinePeak

TINY = ("--steps", "2", "--batch-size", "8", "--eval-batch-size", "16", "--device", "cpu")
KEYS = {
    "train_images_per_s",
    "infer_images_per_s",
    "latency_ms_median",
    "latency_ms_p95",
    "peak_memory_mb",
    "peak_memory_kind",
    "train_gflops",
    "train_fraction_of_conv_peak",
    "matmul_peak_gflops",
    "conv_peak_gflops",
    "threads",
    "device",
    "precision",
    "channels_last",
    "batch_size",
    "input",
}


def bench_json(capsys, *argv: str) -> dict:
    code = main(["bench", *argv, *TINY, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def measured_peak_cache(tmp_path_factory):
    """One real peak measurement, in a cache folder shared by this module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def fake_peak(tmp_path, monkeypatch):
    """A cache folder of its own and a stand-in measurement that counts its calls."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    calls = []

    def fake(device: torch.device) -> MachinePeak:
        calls.append(torch.get_num_threads())
        return MachinePeak(100.0, 50.0, torch.get_num_threads(), peak.machine_name(device))

    monkeypatch.setattr(peak, "measure_peak", fake)
    return calls


@pytest.mark.parametrize(
    ("argv", "precision", "channels_last"),
    [
        (("lenet5", "--data", "mnist"), "fp32", False),
        (("resnet20", "--precision", "bf16", "--channels-last"), "bf16", True),
    ],
)
def test_every_figure_is_reported_and_sane(
    measured_peak_cache, capsys, argv, precision, channels_last
):
    out = bench_json(capsys, *argv)
    assert not KEYS - set(out)
    for key in ("train_images_per_s", "infer_images_per_s", "train_gflops", "conv_peak_gflops"):
        assert out[key] > 0, key
    assert out["matmul_peak_gflops"] > 0
    assert 0 < out["latency_ms_median"] <= out["latency_ms_p95"]
    assert 0 < out["train_fraction_of_conv_peak"] < 1.5
    assert out["peak_memory_mb"] >= 0
    assert out["peak_memory_kind"].startswith("cpu")
    assert out["device"] == "cpu"
    assert out["threads"] == torch.get_num_threads()
    assert out["batch_size"] == 8
    assert (out["precision"], out["channels_last"]) == (precision, channels_last)


def test_input_is_the_data_after_the_recipe_preprocessing(fake_peak, capsys):
    assert bench_json(capsys, "lenet5", "--data", "mnist")["input"] == [1, 32, 32]  # 28 padded
    assert bench_json(capsys, "resnet20", "--data", "mnist")["input"] == [1, 28, 28]
    assert bench_json(capsys, "lenet5", "--data", "cifar10")["input"] == [3, 32, 32]
    assert bench_json(capsys, "resnet20")["input"] == [3, 32, 32]  # the model's own


def test_a_folder_of_images_gives_its_shape_and_classes(fake_peak, tmp_path, capsys):
    for split in ("train", "test"):
        for label in ("cat", "dog", "owl"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "0.png")
    out = bench_json(capsys, "resnet20", "--data", str(tmp_path / "images"))
    assert out["input"] == [3, 40, 48]
    assert out["train_images_per_s"] > 0


def test_flop_accounting_is_twice_the_multiply_adds_and_three_forwards_to_train(fake_peak, capsys):
    out = bench_json(capsys, "resnet20")
    macs = measure(create_model("resnet20"), (3, 32, 32))["macs"]
    assert out["macs_per_image"] == macs
    assert out["train_flop_per_image"] == 2 * 3 * macs
    gflops = out["train_flop_per_image"] * out["train_images_per_s"] / 1e9
    assert math.isclose(out["train_gflops"], gflops, rel_tol=1e-2, abs_tol=0.01)
    assert math.isclose(
        out["train_fraction_of_conv_peak"], out["train_gflops"] / 50.0, rel_tol=1e-2
    )


def test_the_peak_is_measured_once_per_thread_count_and_remeasured_on_request(
    fake_peak, tmp_path, capsys
):
    first = bench_json(capsys, "lenet5")
    second = bench_json(capsys, "lenet5")
    assert len(fake_peak) == 1
    assert (first["peak_cached"], second["peak_cached"]) == (False, True)
    assert second["conv_peak_gflops"] == 50.0
    assert (tmp_path / "peak.json").is_file()
    bench_json(capsys, "lenet5", "--remeasure-peak")
    assert len(fake_peak) == 2
    threads = torch.get_num_threads()
    try:
        bench_json(capsys, "lenet5", "--threads", str(threads + 1))
    finally:
        torch.set_num_threads(threads)
    assert fake_peak == [threads, threads, threads + 1]


def test_an_unreadable_cache_is_measured_again(fake_peak, tmp_path, capsys):
    (tmp_path / "peak.json").write_text("{not json")
    assert bench_json(capsys, "lenet5")["peak_cached"] is False
    assert bench_json(capsys, "lenet5")["peak_cached"] is True


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("lenet6",), "unknown model 'lenet6'"),
        (("lenet5", "--precision", "fp8"), "--precision 'fp8': expected one of fp32, bf16, fp16"),
        (("lenet5", "--steps", "0"), "--steps 0: expected a positive number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(fake_peak, capsys, argv, expected):
    code = main(["bench", *argv])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1
    assert expected in err
    assert fake_peak == []
