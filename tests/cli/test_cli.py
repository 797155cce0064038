"""The `cnnlab` command end to end, on a slice of real MNIST."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.data.mnist import load_mnist
from cnnlab.data.sources import load_dataset
from cnnlab.errors import DataError


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_data_dir):
    """One short lenet5_modern run shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "train",
            "lenet5_modern",
            "--data-dir",
            str(mnist_data_dir),
            "--epochs",
            "1",
            "--limit-train",
            "12000",
            "--limit-test",
            "1000",
            "--out",
            str(run_dir),
            "--quiet",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    return run_dir


def test_train_writes_a_run_and_prints_where_the_report_is(trained_run, capsys):
    assert (trained_run / "report.md").is_file()
    assert json.loads((trained_run / "config.json").read_text())["limit_train"] == 12000


def test_eval_json_reports_errors_as_fractions(trained_run, mnist_data_dir, capsys):
    code, out, _ = run(
        capsys,
        "eval",
        str(trained_run),
        "--data-dir",
        str(mnist_data_dir),
        "--limit",
        "1000",
        "--format",
        "json",
    )
    result = json.loads(out)
    assert code == 0 and result["examples"] == 1000
    assert 0 <= result["top5_error"] <= result["top1_error"] < 0.1
    metrics = json.loads((trained_run / "config.json").read_text())
    assert metrics["model"] == "lenet5_modern"


def test_predict_reads_image_files_like_mnist_digits(trained_run, mnist_data_dir, tmp_path, capsys):
    _, test = load_mnist(mnist_data_dir)
    paths = []
    for i in range(12):  # black ink on white paper, 5x larger, as a user would draw it
        digit = 255 - test.images[1000 + i, 0].numpy()
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(digit).resize((140, 140), Image.BICUBIC).convert("RGB").save(path)
        paths.append(str(path))
    code, out, _ = run(capsys, "predict", str(trained_run), *paths, "--format", "json")
    results = json.loads(out)
    assert code == 0 and [r["image"] for r in results] == paths
    top = results[0]["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]
    correct = sum(
        r["top"][0]["class"] == str(int(test.labels[1000 + i])) for i, r in enumerate(results)
    )
    assert correct >= 10


def test_summary_json_has_the_documented_shape(capsys):
    code, out, _ = run(capsys, "summary", "lenet5_1998", "--format", "json")
    summary = json.loads(out)
    assert code == 0 and summary["model"] == "lenet5_1998" and summary["input"] == [1, 32, 32]
    assert set(summary["layers"][0]) == {
        "name",
        "type",
        "output_shape",
        "params",
        "connections",
        "macs",
        "receptive_field",
    }
    assert summary["total"]["connections"] == 340_908
    assert summary["layers"][0]["receptive_field"] == [5, 5]


def test_summary_paper_shows_the_published_figures_beside_ours(capsys):
    code, out, _ = run(capsys, "summary", "lenet5_1998", "--paper")
    assert code == 0 and "rf" in out.splitlines()[0]
    (row,) = [
        line
        for line in out.splitlines()
        if line.split()[:3] == ["lenet5_1998", "default", "connections"]
    ]
    assert row.split()[3:6] == ["340,908", "340,908", "340,908"] and "yes" in row
    code, out, _ = run(capsys, "paper", "lenet*", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and {r["quantity"] for r in rows} == {"params", "connections"}
    assert all(r["match"] == "yes" for r in rows)


def test_summary_model_args_change_the_model(capsys):
    code, out, _ = run(
        capsys, "summary", "lenet5", "--model-arg", "c3_table=true", "--format", "json"
    )
    assert code == 0 and json.loads(out)["total"]["params"] == 60_806


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv"])
def test_summary_text_formats(capsys, fmt):
    code, out, _ = run(capsys, "summary", "lenet5", "--format", fmt)
    assert code == 0 and ("61,706" in out or "61706" in out)


def test_models_json_lists_every_model(capsys):
    code, out, _ = run(capsys, "models", "--format", "json")
    assert code == 0 and {m["name"] for m in json.loads(out)} >= {"lenet5", "lenet5_1998"}


def test_data_verify_passes_on_the_real_files(mnist_data_dir, capsys):
    code, out, _ = run(capsys, "data", "verify", "mnist", "--data-dir", str(mnist_data_dir))
    assert code == 0 and "mnist in" in out and ": verified" in out


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("cnnlab: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_user_mistakes_exit_2_with_one_line(trained_run, tmp_path, capsys):
    _one_line_error(*run(capsys, "summary", "lenet6")[::2], "lenet6", "did you mean")
    _one_line_error(*run(capsys, "summary", "lenet5", "--input", "1x28x28")[::2], "28x28")
    _one_line_error(*run(capsys, "summary", "lenet5", "--input", "big")[::2], "CxHxW")
    _one_line_error(*run(capsys, "summary", "lenet5", "--model-arg", "depth=3")[::2], "depth")
    _one_line_error(*run(capsys, "paper", "nothing*")[::2], "nothing*")
    _one_line_error(*run(capsys, "eval", str(tmp_path / "nope"))[::2], "nope")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    _one_line_error(*run(capsys, "predict", str(trained_run), str(bad))[::2], "bad.png")
    pickled = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(1)}, pickled)
    _one_line_error(*run(capsys, "eval", str(pickled))[::2], "pickle")
    _one_line_error(
        *run(capsys, "train", "lenet5", "--out", str(trained_run))[::2], "already holds a run"
    )
    _one_line_error(*run(capsys, "train", "--resume", str(trained_run), "--lr", "0.1")[::2], "--lr")
    _one_line_error(*run(capsys, "train", "lenet5", "--model-arg", "norm")[::2], "KEY=VALUE")


def test_under_torchrun_rank_0_alone_prints_a_mistake(monkeypatch, capsys):
    for rank, says in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        code, out, err = run(capsys, "summary", "lenet6")
        assert code == 2 and out == ""
        assert ("lenet6" in err) == says, (rank, err)


def test_missing_dataset_fails_verification_and_says_where_to_put_it(tmp_path, capsys):
    code, out, _ = run(capsys, "data", "verify", "mnist", "--data-dir", str(tmp_path))
    assert code == 2 and "FAILED" in out
    with pytest.raises(DataError, match=str(tmp_path / "mnist")):
        load_dataset("mnist", tmp_path, download=False)


def test_resume_continues_a_finished_run_with_more_epochs(trained_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    code, out, _ = run(capsys, "train", "--resume", str(copy), "--epochs", "2", "--quiet")
    assert code == 0 and "resuming" in out and "after 2 epochs" in out


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it(
    trained_run, tmp_path, capsys
):
    copy = tmp_path / "early"
    copy.mkdir()
    shutil.copy(trained_run / "config.json", copy / "config.json")
    code, out, _ = run(capsys, "train", "--resume", str(copy), "--quiet")
    assert code == 0 and "starting it from the beginning" in out
    assert (copy / "checkpoints" / "last.safetensors").is_file()


def test_python_dash_m_and_help_work():
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "example" in result.stdout


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory, mnist_data_dir) -> list[str]:
    """Two real test digits as a user would draw them: black ink on white, 5x larger."""
    folder = tmp_path_factory.mktemp("digits")
    _, test = load_mnist(mnist_data_dir)
    paths = []
    for i in (0, 1):  # a 7 and a 2
        path = folder / f"digit{i}.png"
        digit = 255 - test.images[i, 0].numpy()
        Image.fromarray(digit).resize((140, 140), Image.BICUBIC).save(path)
        paths.append(str(path))
    return paths


def test_explain_writes_maps_and_figures_for_every_method(
    trained_run, digit_files, tmp_path, capsys
):
    code, out, _ = run(capsys, "explain", str(trained_run), *digit_files, "--out", str(tmp_path))
    assert code == 0 and "Grad-CAM: layer" in out
    for stem in ("digit0", "digit1"):
        assert (tmp_path / f"{stem}-explain.png").is_file()
        for method in ("saliency", "gradcam", "guided-gradcam", "occlusion"):
            raw = np.load(tmp_path / f"{stem}-{method}.npy")
            assert raw.shape == (32, 32) and np.isfinite(raw).all() and raw.max() > 0
            assert f"{stem}-{method}.png" in out
    code, out, _ = run(
        capsys, "explain", str(trained_run), digit_files[0], "--method", "gradcam",
        "--layer", "c3", "--target", "3", "--out", str(tmp_path / "c3"),
    )  # fmt: skip
    assert code == 0 and "layer c3" in out and (tmp_path / "c3" / "digit0-gradcam.npy").is_file()


def test_visualize_draws_filters_feature_maps_and_class_models(
    trained_run, digit_files, tmp_path, capsys
):
    code, out, _ = run(
        capsys, "visualize", str(trained_run), "--filters", "--feature-maps", digit_files[0],
        "--class-models", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    assert np.load(tmp_path / "filters.npy").shape == (6, 1, 5, 5)  # C1 of LeNet-5
    assert np.load(tmp_path / "feature_maps-c1.npy").shape == (6, 28, 28)
    classes = np.load(tmp_path / "class_models.npy")
    assert classes.shape == (10, 1, 32, 32) and classes.min() >= 0 and classes.max() <= 1
    for name in ("filters", "weight_histograms", "feature_maps", "class_models"):
        assert f"{name}.png" in out and (tmp_path / f"{name}.png").is_file()


def test_the_run_report_looks_inside_the_model(trained_run):
    report = (trained_run / "report.md").read_text()
    for name in ("filters.png", "feature_maps.png", "explanations.png"):
        assert f"]({name})" in report and (trained_run / name).is_file()


def test_explain_and_visualize_mistakes_are_one_line(trained_run, digit_files, tmp_path, capsys):
    base = ("explain", str(trained_run), digit_files[0], "--out", str(tmp_path))
    _one_line_error(*run(capsys, *base, "--layer", "c9")[::2], "c9", "c1")
    _one_line_error(*run(capsys, *base, "--target", "12")[::2], "--target '12'")
    _one_line_error(*run(capsys, *base, "--target", "\u00b2")[::2], "--target '\u00b2'")
    _one_line_error(
        *run(capsys, "visualize", str(trained_run), "--out", str(tmp_path))[::2], "--filters"
    )


def test_train_takes_settings_from_a_config_file_and_flags_win(mnist_data_dir, tmp_path, capsys):
    settings = {"model": "lenet5_modern", "epochs": 1, "limit_train": 512, "limit_test": 128}
    path = tmp_path / "best.json"
    path.write_text(json.dumps({**settings, "lr": 0.001, "batch_size": 64, "out": "elsewhere"}))
    run_dir = tmp_path / "run"
    argv = ("train", "--config", str(path), "--lr", "0.003", "--out", str(run_dir), "--quiet")
    code, _, _ = run(capsys, *argv, "--data-dir", str(mnist_data_dir))
    cfg = json.loads((run_dir / "config.json").read_text())
    assert code == 0 and cfg["model"] == "lenet5_modern" and cfg["epochs"] == 1
    assert cfg["lr"] == 0.003 and cfg["batch_size"] == 64 and cfg["out"] == str(run_dir)
    path.write_text(json.dumps({"epochs": 1, "lerning_rate": 0.1}))
    _one_line_error(*run(capsys, "train", "lenet5", "--config", str(path))[::2], "lerning_rate")
    path.write_text("{not json")
    _one_line_error(*run(capsys, "train", "lenet5", "--config", str(path))[::2], "JSON")


def test_classes_trains_on_a_subset_and_eval_scores_the_same_subset(
    mnist_data_dir, tmp_path, capsys
):
    """Yosinski et al. 2014's task A: digits 0-4 only, relabelled 0..4."""
    run_dir = tmp_path / "digits0to4"
    common = ("--data-dir", str(mnist_data_dir), "--quiet")
    code, _, err = run(
        capsys, "train", "lenet5_modern", "--classes", "3,0,1,2,4", "--epochs", "1",
        "--limit-train", "3000", "--limit-test", "500", "--out", str(run_dir), *common,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((run_dir / "config.json").read_text())["classes"] == ["3", "0", "1", "2", "4"]
    code, out, err = run(capsys, "eval", str(run_dir), "--format", "json", *common[:2])
    assert code == 0, err
    assert "the checkpoint's 5 classes of the 10 in mnist" in err
    result = json.loads(out)
    assert list(result["per_class_error"]) == ["0", "1", "2", "3", "4"]  # the dataset's order
    test = load_dataset("mnist", mnist_data_dir)[1]
    assert result["examples"] == int((test.labels < 5).sum())  # every test digit 0-4, no other
    assert result["top1_error"] < 0.2
    _one_line_error(
        *run(capsys, "train", "lenet5_modern", "--classes", "0,x", *common)[::2], "no class 'x'"
    )
    _one_line_error(
        *run(capsys, "train", "lenet5_modern", "--classes", "1,1", *common)[::2], "1 named twice"
    )
