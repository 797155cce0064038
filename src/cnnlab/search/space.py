"""The search space: which training settings a search varies, and over what values.

A space file is a JSON object; each key is a TrainConfig field or `model_args.FIELD` (a field
of the model's config), each value one of

    {"type": "float", "low": 1e-4, "high": 1e-1, "log": true}
    {"type": "int", "low": 16, "high": 128, "step": 16}
    {"type": "categorical", "choices": [32, 64, 128]}

A float or int may also list `"grid": [...]`, the values the grid sampler tries (its range then
defaults to the grid's); the grid sampler needs a grid or choices for every key. Every mistake is
found here, before any training, with a one-line error naming the key.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import optuna
import torch

from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model, get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.losses import LOSSES
from cnnlab.training.optimizers import OPTIMIZERS
from cnnlab.training.schedules import SCHEDULES

PARAM_TYPES = ("float", "int", "categorical")
_ENTRY_KEYS = {
    "float": {"type", "low", "high", "log", "step", "grid"},
    "int": {"type", "low", "high", "log", "step", "grid"},
    "categorical": {"type", "choices"},
}
# settings that fix the data, the budget's measure or the machine: the same for every trial
FIXED = {
    "model", "data", "data_dir", "out", "model_args", "preprocessing", "milestones",
    "seed", "val_split", "limit_train", "limit_test", "eval_batch_size",
    "device", "threads", "quiet", "recipe_note",
    "checkpoint_every", "checkpoint_minutes", "skip_nonfinite",
}  # fmt: skip
NAMED = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": tuple(LOSSES)}
MODEL_ARGS = "model_args."


@dataclass(frozen=True)
class Kind:
    """What values a setting takes: float (ints too), int, bool or str; `optional`: null too."""

    base: type
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or self.base is bool:
            return isinstance(value, bool) and self.base is bool
        if self.base is float:
            return isinstance(value, (int, float))
        return isinstance(value, self.base)


def _kind(hint: Any) -> Kind | None:
    """The Kind of a type hint (`float`, `float | None`, ...); None for anything else."""
    args = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    bases = [a for a in args if a is not type(None)]
    if len(bases) == 1 and bases[0] in (float, int, bool, str):
        return Kind(bases[0], optional=len(args) > 1)
    return None


@dataclass(frozen=True)
class Param:
    """One searched setting: a float or int range (with an optional grid) or a set of choices."""

    name: str
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()  # categorical
    grid: tuple[Any, ...] = ()  # float/int: the grid sampler's values

    @property
    def grid_values(self) -> tuple[Any, ...]:
        return self.choices if self.type == "categorical" else self.grid

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        d: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        d.update({"log": True} if self.log else {})
        d.update({"step": self.step} if self.step is not None else {})
        d.update({"grid": list(self.grid)} if self.grid else {})
        return d


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space; every key needs a grid or choices."""
        missing = [p.name for p in self.params if not p.grid_values]
        if missing:
            raise CnnlabError(
                f"--sampler grid needs the values of every key: give {', '.join(missing)} a "
                '"grid" list (or make it categorical with "choices")'
            )
        return {p.name: list(p.grid_values) for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid().values())

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}


def train_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """{'lr': 0.01, 'model_args.dropout': 0.2} -> {'lr': 0.01, 'model_args': {'dropout': 0.2}}."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name.startswith(MODEL_ARGS):
            out.setdefault("model_args", {})[name.removeprefix(MODEL_ARGS)] = value
        else:
            out[name] = value
    return out


def load_space(path: str | Path, model: str) -> SearchSpace:
    """Read and check a space file for `model` (see the module docstring)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CnnlabError(f"--space {path}: not a readable JSON file ({e})") from None
    return parse_space(d, model, f"--space {path}")


def parse_space(d: Any, model: str, source: str = "space") -> SearchSpace:
    if not isinstance(d, dict) or not d:
        raise CnnlabError(f"{source}: expected a JSON object of settings to search, got {d!r:.60}")
    kinds = _kinds(model)
    params = []
    for name, entry in d.items():
        where = f"{source}: {name}"
        if name not in kinds:
            raise CnnlabError(f"{where}: {_unknown(name, model, kinds)}")
        kind = kinds[name]
        if kind is None:
            raise CnnlabError(f"{where} cannot be searched: it is not a number, flag or name")
        param = _param(name, entry, kind, where)
        if name in NAMED:
            bad = [v for v in param.choices if v not in NAMED[name]]
            if bad:
                raise CnnlabError(f"{where}: unknown {bad}: expected some of {list(NAMED[name])}")
        if name.startswith(MODEL_ARGS):
            _check_model_values(model, param, where)
        params.append(param)
    return SearchSpace(tuple(params))


def _kinds(model: str) -> dict[str, Kind | None]:
    """Every searchable key of `model`'s runs and the values it takes."""
    hints = get_type_hints(TrainConfig)
    kinds = {f.name: _kind(hints[f.name]) for f in fields(TrainConfig) if f.name not in FIXED}
    config = type(get_spec(model).config)
    model_hints = get_type_hints(config)
    kinds.update({MODEL_ARGS + f.name: _kind(model_hints[f.name]) for f in fields(config)})
    return kinds


def _unknown(name: str, model: str, kinds: Mapping[str, Kind | None]) -> str:
    settings = ", ".join(k for k in kinds if not k.startswith(MODEL_ARGS))
    options = ", ".join(k.removeprefix(MODEL_ARGS) for k in kinds if k.startswith(MODEL_ARGS))
    if name.startswith(MODEL_ARGS):
        return f"{model} has no option {name.removeprefix(MODEL_ARGS)!r}: expected one of {options}"
    if name in FIXED:
        return f"fixed for the whole search; searchable are {settings} and model_args.FIELD"
    return f"unknown setting: expected one of {settings}, or model_args.FIELD ({options})"


def _param(name: str, entry: Any, kind: Kind, where: str) -> Param:
    if not isinstance(entry, dict) or entry.get("type") not in PARAM_TYPES:
        raise CnnlabError(
            f'{where}: expected an object with "type": one of {", ".join(PARAM_TYPES)}, '
            f"got {entry!r:.60}"
        )
    ptype = entry["type"]
    extra = sorted(set(entry) - _ENTRY_KEYS[ptype])
    if extra:
        raise CnnlabError(f"{where}: {ptype} takes {sorted(_ENTRY_KEYS[ptype])}, not {extra}")
    if ptype == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise CnnlabError(f'{where}: expected "choices": a non-empty list, got {choices!r}')
        _check_values(choices, kind, where, "choices")
        return Param(name, ptype, choices=tuple(choices))
    if kind.base not in (float, int) or (ptype == "float" and kind.base is int):
        expected = '"int" or categorical' if kind.base is int else "categorical"
        raise CnnlabError(f"{where} takes {kind.base.__name__} values: expected {expected}")
    return _numeric(name, ptype, entry, where)


def _numeric(name: str, ptype: str, entry: dict[str, Any], where: str) -> Param:
    number = Kind(int if ptype == "int" else float)
    grid = entry.get("grid", [])
    if not isinstance(grid, list):
        raise CnnlabError(f'{where}: expected "grid": a list of {ptype} values, got {grid!r}')
    _check_values(grid, number, where, "grid")
    low, high = entry.get("low"), entry.get("high")
    if low is None and high is None and grid:
        low, high = min(grid), max(grid)
    if not (number.accepts(low) and number.accepts(high)) or low is None or low > high:
        raise CnnlabError(f'{where}: expected {ptype}s "low" <= "high", got {low!r}, {high!r}')
    log, step = entry.get("log", False), entry.get("step")
    if not isinstance(log, bool) or (log and low <= 0):
        raise CnnlabError(f'{where}: "log": true needs "low" > 0 (got log={log!r}, low={low})')
    if step is not None and (not number.accepts(step) or step <= 0 or log):
        raise CnnlabError(f'{where}: "step" {step!r}: expected a positive {ptype}, without log')
    off = [v for v in grid if not low <= v <= high or (step and not _on_step(v, low, step))]
    if off:
        raise CnnlabError(f"{where}: grid values {off} are outside [{low}, {high}] or its step")
    cast = float if ptype == "float" else int
    return Param(
        name,
        ptype,
        low=cast(low),
        high=cast(high),
        log=log,
        step=None if step is None else cast(step),
        grid=tuple(cast(v) for v in grid),
    )


def _on_step(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return math.isclose(k, round(k), abs_tol=1e-9)


def _check_values(values: list[Any], kind: Kind, where: str, what: str) -> None:
    bad = [v for v in values if not kind.accepts(v)]
    if bad:
        none = " or null" if kind.optional else ""
        raise CnnlabError(f"{where}: {what} {bad} are not {kind.base.__name__}{none} values")
    if len({json.dumps(v) for v in values}) < len(values):
        raise CnnlabError(f"{where}: {what} {values} repeat a value")


def _check_model_values(model: str, param: Param, where: str) -> None:
    """Build the model (without memory, on the meta device) with each value the space names."""
    values = param.choices or (*param.grid, param.low, param.high)
    option = param.name.removeprefix(MODEL_ARGS)
    for value in dict.fromkeys(values):
        try:
            with torch.device("meta"):
                create_model(model, **{option: value})
        except CnnlabError as e:
            raise CnnlabError(f"{where}: {value!r} does not build {model}: {e}") from None
