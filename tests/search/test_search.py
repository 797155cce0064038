"""`cnnlab search` on slices of real MNIST: grid points run once, a search resumes where it
stopped, the best settings train again as they did, and a bad space file is one line."""

from __future__ import annotations

import csv
import itertools
import json

import optuna
import pytest

from cnnlab.cli.main import main
from cnnlab.cli.train_cmd import config_file_settings
from cnnlab.registry import get_spec
from cnnlab.search.space import parse_space
from cnnlab.search.study import SearchSettings, run_search
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer
from cnnlab.viz.search_plots import plot_objective_vs_params

MODEL = "lenet5_modern"
BUDGET = ("--epochs", "1", "--limit-train", "256", "--limit-test", "100", "--threads", "1")
GRID = {
    "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True, "grid": [1e-3, 3e-3]},
    "model_args.dropout": {"type": "categorical", "choices": [0.0, 0.3]},
}


def _rows(out) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def _search(capsys, space_file, out, *flags) -> tuple[int, str, str]:
    code = main(["search", MODEL, "--space", str(space_file), "--out", str(out), *flags])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def _settings(tmp_path, data_dir, space: dict, **kw) -> SearchSettings:
    defaults = dict(epochs=1, limit_train=256, limit_test=100, threads=1, data_dir=str(data_dir))
    return SearchSettings(MODEL, parse_space(space, MODEL), tmp_path / "search", **defaults | kw)


@pytest.fixture(scope="module")
def grid_search(tmp_path_factory, mnist_data_dir):
    """A 2x2 grid over the learning rate and dropout, run from the command line."""
    folder = tmp_path_factory.mktemp("search")
    space = folder / "space.json"
    space.write_text(json.dumps(GRID))
    argv = ["search", MODEL, "--space", str(space), "--out", str(folder / "out")]
    argv += ["--sampler", "grid", "--data-dir", str(mnist_data_dir), *BUDGET]
    assert main(argv) == 0
    return folder / "out", space, argv


def test_grid_runs_every_point_once_with_its_values(grid_search):
    out, _, _ = grid_search
    rows = _rows(out)
    points = {(float(r["lr"]), float(r["model_args.dropout"])) for r in rows}
    assert len(rows) == 4 and points == set(itertools.product([1e-3, 3e-3], [0.0, 0.3]))
    assert {r["state"] for r in rows} == {"complete"}
    for r in rows:  # each trial trained with its values, and its objective is its val error
        trial = out / f"trial-{int(r['trial']):03d}"
        cfg = json.loads((trial / "config.json").read_text())
        assert (cfg["lr"], cfg["model_args"]["dropout"]) == (
            float(r["lr"]),
            float(r["model_args.dropout"]),
        )
        assert cfg["val_split"] == 25 and cfg["epochs"] == 1 and cfg["limit_train"] == 256
        with open(trial / "metrics.csv") as f:
            assert float(r["val_error"]) == float(list(csv.DictReader(f))[-1]["val_top1_error"])
    assert (
        "| trial | state | lr | model_args.dropout | val_error |"
        in (out / "results.md").read_text()
    )
    for png in ("objective_vs_params.png", "history.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_command_again_runs_nothing(grid_search, capsys):
    out, _, argv = grid_search
    before = _rows(out)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "4 trials done, running 0 more" in printed and "best: trial" in printed
    assert _rows(out) == before
    assert len(list(out.glob("trial-*"))) == 4


def test_a_changed_search_in_the_same_folder_is_refused(grid_search, mnist_data_dir, capsys):
    out, space, _ = grid_search
    flags = ("--sampler", "random", "--data-dir", str(mnist_data_dir), *BUDGET)
    code, _, err = _search(capsys, space, out, *flags)
    assert code == 2 and "holds a search with other sampler" in err and err.count("\n") == 1


def test_best_json_trains_the_best_trial_again(grid_search, mnist_data_dir, tmp_path, capsys):
    out, _, _ = grid_search
    rows = _rows(out)
    best = min(rows, key=lambda r: (float(r["val_error"]), int(r["trial"])))
    settings = config_file_settings(str(out / "best.json"))
    assert settings.pop("model") == MODEL
    cfg = TrainConfig.from_recipe(MODEL, get_spec(MODEL).recipe, **settings)
    assert cfg.lr == float(best["lr"]) and cfg.model_args["dropout"] == float(
        best["model_args.dropout"]
    )
    argv = ["train", "--config", str(out / "best.json"), "--out", str(tmp_path / "again")]
    assert main([*argv, "--threads", "1", "--quiet", "--data-dir", str(mnist_data_dir)]) == 0
    capsys.readouterr()
    with open(tmp_path / "again" / "metrics.csv") as f:
        assert float(list(csv.DictReader(f))[-1]["val_top1_error"]) == float(best["val_error"])


def test_random_search_resumes_with_more_trials(mnist_data_dir, tmp_path):
    space = {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    }
    first = run_search(_settings(tmp_path, mnist_data_dir, space, sampler="random", trials=2))
    assert [r["trial"] for r in first.rows] == [0, 1]
    result = run_search(_settings(tmp_path, mnist_data_dir, space, sampler="random", trials=3))
    assert result.rows[:2] == first.rows  # the finished trials are not run again
    assert [r["state"] for r in result.rows] == ["complete"] * 3
    assert len({r["lr"] for r in result.rows}) == 3
    assert all(1e-4 <= r["lr"] <= 1e-1 and r["batch_size"] in (32, 64, 128) for r in result.rows)
    assert len(list((tmp_path / "search").glob("trial-*"))) == 3


def test_a_trial_cut_off_mid_run_runs_again_and_no_grid_point_twice(
    mnist_data_dir, tmp_path, monkeypatch
):
    space = {"model_args.dropout": {"type": "categorical", "choices": [0.0, 0.3]}}
    settings = _settings(tmp_path, mnist_data_dir, space, sampler="grid")
    original = Trainer._print_epoch

    def ctrl_c_in_trial_1(self, row):
        if self.run_dir.name == "trial-001":
            raise KeyboardInterrupt
        original(self, row)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_print_epoch", ctrl_c_in_trial_1)
        with pytest.raises(KeyboardInterrupt):
            run_search(settings)
    rows = run_search(settings).rows
    assert [(r["trial"], r["state"]) for r in rows] == [
        (0, "complete"),
        (1, "interrupted"),
        (2, "complete"),
    ]
    assert rows[1]["note"] == "rerun as trial 2" and rows[2]["note"] == "rerun of trial 1"
    assert rows[2]["model_args.dropout"] == rows[1]["model_args.dropout"]
    assert {rows[0]["model_args.dropout"], rows[2]["model_args.dropout"]} == {0.0, 0.3}
    assert run_search(settings).rows == rows


def test_a_pruned_trial_stops_after_the_epoch_it_is_pruned(mnist_data_dir, tmp_path):
    space = {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}
    settings = _settings(tmp_path, mnist_data_dir, space, sampler="random", trials=1, epochs=3)
    result = run_search(settings, pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    (row,) = result.rows
    assert row["state"] == "pruned" and row["epochs"] == 1 and row["note"] == "pruned after epoch 1"
    with open(tmp_path / "search" / "trial-000" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    assert result.best is None and not (tmp_path / "search" / "best.json").exists()


def test_objective_plot_has_a_panel_per_hyperparameter_with_categories():
    rows = [
        {"trial": 0, "state": "complete", "lr": 1e-3, "norm": "batch", "bs": 128, "val_error": 0.1},
        {"trial": 1, "state": "pruned", "lr": 1e-2, "norm": "none", "bs": 32, "val_error": 0.3},
    ]
    names = ["lr", "norm", "bs"]
    fig = plot_objective_vs_params(rows, names, "val_error", {"lr"}, categorical={"bs"})
    lr_ax, norm_ax, bs_ax = fig.axes
    assert lr_ax.get_xscale() == "log"
    assert [t.get_text() for t in norm_ax.get_xticklabels()] == ["batch", "none"]
    assert [t.get_text() for t in bs_ax.get_xticklabels()] == ["128", "32"]
    assert [list(line.get_ydata()) for line in lr_ax.lines] == [[10.0], [30.0]]  # in %


BAD_SPACES = [
    ("{not json", "not a readable JSON file"),
    ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, '"low" <= "high"'),
    ({"learning_rate": {"type": "float", "low": 0.1, "high": 1}}, "unknown setting"),
    ({"seed": {"type": "int", "low": 0, "high": 3}}, "fixed for the whole search"),
    ({"model_args.widht": {"type": "float", "low": 0, "high": 1}}, "has no option 'widht'"),
    ({"batch_size": {"type": "float", "low": 16, "high": 64}}, "takes int values"),
    ({"optimizer": {"type": "categorical", "choices": ["sgd", "rmsprop"]}}, "['rmsprop']"),
    ({"lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}, '"log": true needs'),
    ({"lr": {"type": "uniform", "low": 0, "high": 0.1}}, 'expected an object with "type"'),
    ({"lr": {"type": "float", "low": 0.001, "high": 0.01, "grid": [0.5]}}, "outside"),
    ({"model_args.norm": {"type": "categorical", "choices": ["fancy"]}}, "does not build"),
    ({"model_args.dropout": {"type": "categorical", "choices": []}}, "non-empty list"),
    ({"lr": {"type": "float", "low": 1e-3, "high": 1e-1}}, "--sampler grid needs"),
]


@pytest.mark.parametrize(("space", "message"), BAD_SPACES)
def test_a_bad_space_file_is_one_line(tmp_path, capsys, space, message):
    path = tmp_path / "space.json"
    path.write_text(space if isinstance(space, str) else json.dumps(space))
    code, _, err = _search(capsys, path, tmp_path / "out", "--sampler", "grid", *BUDGET)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # refused before anything ran
