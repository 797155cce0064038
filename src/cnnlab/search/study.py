"""`run_search`: an Optuna study of training runs, resumable from its SQLite file.

Each trial is one Trainer run into OUT/trial-NNN: the model's recipe, then the search's fixed
settings (data, epochs, limits, validation split, seed), then the trial's values. The objective
is the final epoch's top-1 error on the validation split, held out of the training set, so the
test set plays no part in the choice (`metric="test"` selects on the test set, if asked). A
median pruner (Optuna's MedianPruner: stop a trial whose error after an epoch is worse than the
median of earlier trials' after that epoch) saves the budget of hopeless trials.

OUT/study.db holds every trial, so the same call again runs only the trials still missing from
`trials`; a trial cut off mid-run (Ctrl-C, a killed process) runs again with the same values,
while one that failed (its loss diverged) counts as done. Grid points never run twice: Optuna's
GridSampler hands out unvisited points, and each trial's point is checked against the finished
ones before it trains. Random and TPE samplers are seeded with (seed + trials so far), so
raising --trials of a finished search draws what one call with them all would. One process
per study.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.atomic_file import write_text_atomically
from cnnlab.data.sources import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.registry import get_spec
from cnnlab.search.results import SearchResult, trial_note, trial_status, write_results
from cnnlab.search.space import SearchSpace, train_overrides
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

SAMPLERS = ("grid", "random", "tpe")
METRICS = ("val", "test")
DIRECTIONS = ("minimize", "maximize")
STUDY_NAME = "cnnlab-search"
COUNTED = ("complete", "pruned", "failed")  # trial states that count towards `trials`
# what a resumed search must share with the one it continues
IDENTITY = ("model", "space", "sampler", "metric", "direction", "data", "epochs")
IDENTITY += ("limit_train", "limit_test", "val_split", "seed")


@dataclass(frozen=True)
class SearchSettings:
    """One search: what to vary (`space`), how (`sampler`, `trials`) and each trial's budget."""

    model: str
    space: SearchSpace
    out: Path
    sampler: str = "tpe"  # grid | random | tpe
    trials: int | None = None  # in all, with those of earlier calls; default: the grid or 20
    metric: str = "val"  # val | test: the split whose final top-1 error is the objective
    direction: str = "minimize"
    data: str = "mnist"
    data_dir: str | None = None
    epochs: int | None = None  # default: the recipe's
    limit_train: int | None = None
    limit_test: int | None = None
    val_split: int | None = None  # default: 10% of the (limited) training set
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    @property
    def objective(self) -> str:
        return f"{self.metric}_error"

    def identity(self) -> dict[str, Any]:
        d = asdict(self) | {"space": self.space.to_dict()}
        return {k: d[k] for k in IDENTITY}


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its stop at the last point: `run_search` counts the points
    itself, and an interrupted point's rerun (an enqueued trial) has no grid id to stop on."""

    def after_trial(self, study: Any, trial: FrozenTrial, state: Any, values: Any) -> None:
        return None


def run_search(
    settings: SearchSettings,
    pruner: optuna.pruners.BasePruner | None = None,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Run (or continue) the search into `settings.out`; write its results; return them."""
    settings = _resolved(settings)
    _trial_config(settings, {})  # the fixed settings fail here, before any trial
    out = Path(settings.out)
    _claim(out, settings)
    pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=5)
    study = _study(settings, pruner, 0)
    _recover(study, log)
    todo = _planned(study, settings, log)
    for _ in range(todo):
        study = _study(settings, pruner, len(study.trials))
        study.optimize(
            _objective(settings),
            n_trials=1,
            catch=(CnnlabError,),
            callbacks=[lambda _, t: log(_trial_line(t, settings))],
        )
    return write_results(study.trials, settings.space, settings.objective, settings.direction, out)


def _resolved(s: SearchSettings) -> SearchSettings:
    if s.sampler not in SAMPLERS:
        raise CnnlabError(f"--sampler {s.sampler}: expected one of {', '.join(SAMPLERS)}")
    if s.metric not in METRICS or s.direction not in DIRECTIONS:
        raise CnnlabError(
            f"--metric {s.metric} --direction {s.direction}: expected metric val or test, "
            "direction minimize or maximize"
        )
    trials = s.trials
    if trials is None:
        trials = s.space.grid_size() if s.sampler == "grid" else 20
    elif s.sampler == "grid":
        s.space.grid()  # every key needs its values
    if trials < 1:
        raise CnnlabError(f"--trials {trials}: expected >= 1")
    epochs = s.epochs or get_spec(s.model).recipe.epochs
    n_train = len(load_dataset(s.data, s.data_dir)[0])  # a missing dataset fails here, once
    n_train = min(s.limit_train or n_train, n_train)
    val_split = max(1, n_train // 10) if s.val_split is None else s.val_split
    if not (1 if s.metric == "val" else 0) <= val_split < n_train:
        raise CnnlabError(
            f"--val-split {val_split}: expected 1 to {n_train - 1} of the {n_train} training "
            "examples (0 only with --metric test)"
        )
    return replace(s, trials=trials, epochs=epochs, val_split=val_split, out=Path(s.out))


def _trial_config(s: SearchSettings, params: dict[str, Any]) -> TrainConfig:
    """The recipe, then the search's fixed settings, then the trial's values."""
    spec = get_spec(s.model)
    fixed = dict(data=s.data, data_dir=s.data_dir, epochs=s.epochs, limit_train=s.limit_train)
    fixed |= dict(limit_test=s.limit_test, val_split=s.val_split, seed=s.seed, device=s.device)
    fixed |= dict(threads=s.threads, quiet=True)
    return TrainConfig.from_recipe(s.model, spec.recipe, **(fixed | train_overrides(params)))


def _claim(out: Path, s: SearchSettings) -> None:
    """Record the search's settings in OUT/search.json, or check that they are the same."""
    record = out / "search.json"
    if record.is_file():
        before = json.loads(record.read_text())
        changed = [k for k in IDENTITY if before.get(k) != s.identity()[k]]
        if changed:
            raise CnnlabError(
                f"{out} holds a search with other {', '.join(changed)}: run it with its own "
                f"settings ({record}) to continue it, or choose another --out"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise CnnlabError(f"{out} is not empty and holds no search.json: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(record, json.dumps(s.identity(), indent=2))


def _study(s: SearchSettings, pruner: optuna.pruners.BasePruner, n_so_far: int) -> optuna.Study:
    if s.sampler == "grid":  # the same seed every time: it fixes the order of the points
        sampler: optuna.samplers.BaseSampler = _GridSampler(s.space.grid(), seed=s.seed)
    elif s.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=s.seed + n_so_far)
    else:
        sampler = optuna.samplers.TPESampler(seed=s.seed + n_so_far)
    return optuna.create_study(
        storage=f"sqlite:///{Path(s.out).resolve() / 'study.db'}",
        study_name=STUDY_NAME,
        direction=s.direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def _recover(study: optuna.Study, log: Callable[[str], None]) -> None:
    """Queue a rerun of every trial cut off mid-run (left RUNNING by a killed process, or
    FAILed by Ctrl-C) that has none yet."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)  # one process per study: nobody runs it
    trials = study.get_trials(deepcopy=False)
    rerun = {t.user_attrs["rerun_of"] for t in trials if "rerun_of" in t.user_attrs}
    for t in trials:
        if trial_status(t) == "interrupted" and t.number not in rerun and t.params:
            study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number})
            log(f"trial {t.number} was interrupted: it runs again")


def _planned(study: optuna.Study, s: SearchSettings, log: Callable[[str], None]) -> int:
    """How many trials this call runs: up to `s.trials` in all, and no grid point twice."""
    done = [t for t in study.get_trials(deepcopy=False) if trial_status(t) in COUNTED]
    todo = max(0, s.trials - len(done))
    if s.sampler == "grid":
        size = s.space.grid_size()
        left = size - len({_point(t.params) for t in done})
        if s.trials > size:
            log(f"the grid has {size} points: --trials {s.trials} runs each once")
        todo = min(todo, left)
    log(
        f"search {s.out}: {len(done)} trials done, running {todo} more "
        f"({s.sampler} sampler, objective: final {s.metric} top-1 error)"
    )
    return todo


def _point(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _objective(s: SearchSettings) -> Callable[[optuna.Trial], float]:
    key = f"{s.metric}_top1_error"

    def objective(trial: optuna.Trial) -> float:
        params = s.space.suggest(trial)
        if s.sampler == "grid":
            _refuse_a_visited_point(trial, params)
        cfg = _trial_config(s, params)
        run_dir = Path(s.out) / f"trial-{trial.number:03d}"
        cfg.out = str(run_dir)

        def report(epoch: int, row: dict[str, Any]) -> None:
            trial.report(row[key], epoch)
            if epoch < cfg.epochs and trial.should_prune():
                trial.set_user_attr("pruned_after", epoch)
                raise optuna.TrialPruned(f"{s.metric} error {row[key]:.2%} after epoch {epoch}")

        try:
            command = f"cnnlab search {s.model} --out {s.out}: trial {trial.number}"
            result = Trainer(cfg, run_dir, command, report).fit()
        except CnnlabError as e:
            trial.set_user_attr("error", str(e))
            raise
        return result.final[key]

    return objective


def _refuse_a_visited_point(trial: optuna.Trial, params: dict[str, Any]) -> None:
    for t in trial.study.get_trials(deepcopy=False):
        if trial_status(t) in COUNTED and _point(t.params) == _point(params):
            trial.set_user_attr("duplicate_of", t.number)
            raise optuna.TrialPruned(f"grid point already run as trial {t.number}")


def _trial_line(t: FrozenTrial, s: SearchSettings) -> str:
    values = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
    )
    status = trial_status(t)
    if status == "complete":
        return f"trial {t.number}: {s.metric} error {t.value:.2%} ({values})"
    return f"trial {t.number}: {status}, {trial_note(t, {})} ({values})"
