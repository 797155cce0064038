"""The resolved configuration of a training run: the model's recipe, overridden
by whatever the command line (or a caller) sets."""

from __future__ import annotations

import difflib
import json
import logging
import math
import numbers
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from cnnlab.data.augment import parse_augment
from cnnlab.data.class_subset import class_names
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError
from cnnlab.precision import PRECISIONS
from cnnlab.recipe import Recipe
from cnnlab.training.losses import check_label_smoothing
from cnnlab.training.transfer import parse_freeze

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every setting of one run; saved as config.json in the run directory."""

    model: str
    data: str = "mnist"
    data_dir: str | None = None
    out: str | None = None  # the run directory; default runs/<model>-<data>-<time>
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides of the model config
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    dataset_stats: bool = False  # normalise by the training split's own channel mean/std
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    step_size: int = 30
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 2000
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0  # eps of Szegedy et al. 2016, Section 7 (cross_entropy only)
    grad_clip: float | None = None  # clip the gradient norm to this
    skip_nonfinite: bool = False  # skip a batch whose loss is NaN/inf instead of stopping
    checkpoint_every: int | None = None  # also save the training state every N steps
    checkpoint_minutes: float | None = None  # ... and/or every M minutes
    seed: int = 0
    val_split: int = 0  # examples held out of the training set for validation
    limit_train: int | None = None  # use only the first N training examples
    limit_test: int | None = None  # use only the first N test examples
    augment: tuple[str, ...] = ()  # training-batch augmentations, cnnlab.data.augment's specs
    classes: tuple[str, ...] = ()  # train and test on these classes only, relabelled 0..k-1
    init_from: str | None = None  # a checkpoint: start from its weights but the classifier's
    freeze: str = "none"  # none | all-but-head | stages:N (cnnlab.training.transfer)
    backbone_lr_mult: float = 1.0  # the backbone's learning rate is lr times this
    device: str = "auto"
    threads: int | None = None  # CPU threads; default: PyTorch's choice
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast of forward and loss (cnnlab.precision)
    channels_last: bool = False  # model and batches in channels_last memory format
    compile: bool = False  # run the model's forward through torch.compile
    quiet: bool = False
    recipe_note: str = ""

    @classmethod
    def from_recipe(cls, model: str, recipe: Recipe, **overrides: Any) -> TrainConfig:
        """The recipe's settings, then every override that is not None."""
        names = {f.name for f in fields(cls)}
        base = {k: v for k, v in recipe.to_dict().items() if k in names}
        base["preprocessing"] = recipe.preprocessing
        base["recipe_note"] = recipe.note
        unknown = set(overrides) - names
        if unknown:
            raise CnnlabError(f"unknown training settings {sorted(unknown)}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("augment") is None and recipe.augment_for:
            data = base.get("data", cls.data)
            if data not in recipe.augment_for:
                off = (
                    f"the recipe's augmentation ({' '.join(recipe.augment)}) is for "
                    f"{', '.join(recipe.augment_for)}, so it is off on {data}; "
                    "--augment asks for it"
                )
                log.info(off)
                base["augment"] = ()
                base["recipe_note"] += f" On this run, {off}."
        cfg = cls(model=model, **base)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if not (f.name in ("augment", "classes") and isinstance(value, str)) and not _conforms(
                value, hints[f.name]
            ):
                raise CnnlabError(f"{f.name}={value!r:.60}: expected {_describe(hints[f.name])}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise CnnlabError(
                    f"--{name.replace('_', '-')} {getattr(self, name)}: expected >= 1"
                )
        for name in ("limit_train", "limit_test", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} {value}: expected >= 1")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise CnnlabError(f"--grad-clip {self.grad_clip}: expected a positive norm")
        if self.checkpoint_minutes is not None and not self.checkpoint_minutes > 0:
            raise CnnlabError(f"--checkpoint-minutes {self.checkpoint_minutes}: expected > 0")
        parse_freeze(self.freeze)
        if not self.backbone_lr_mult > 0:
            raise CnnlabError(
                f"--backbone-lr-mult {self.backbone_lr_mult}: expected a positive factor "
                "(freeze the backbone with --freeze instead of a zero rate)"
            )
        if self.freeze == "all-but-head" and self.backbone_lr_mult != 1.0:
            raise CnnlabError(
                f"--backbone-lr-mult {self.backbone_lr_mult} with --freeze all-but-head: "
                "the backbone is frozen; expected stages:N or none"
            )
        # a list from the command line or a JSON file; one string is one spec
        self.augment = (self.augment,) if isinstance(self.augment, str) else tuple(self.augment)
        if self.augment == ("none",):  # no augmentation, not even the recipe's
            self.augment = ()
        parse_augment(self.augment)
        self.classes = class_names(self.classes) if self.classes else ()
        check_label_smoothing(self.loss, self.label_smoothing)
        if self.precision not in PRECISIONS:
            raise CnnlabError(
                f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}"
            )

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "config.json") -> TrainConfig:
        """The settings of a run from its config.json text; `source` names it in errors."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CnnlabError(f"{source}: not valid JSON ({e})") from None
        settings = cls.settings_from_dict(d, source)
        if "model" not in settings:
            raise CnnlabError(f"{source}: no 'model' setting; expected the settings of a run")
        return cls(**settings)

    @classmethod
    def read(cls, path: str | Path) -> TrainConfig:
        """The settings in the config.json file at `path`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CnnlabError(f"{path}: not a readable config.json ({e})") from None
        return cls.from_json(text, str(path))

    @classmethod
    def settings_from_dict(cls, d: Any, source: str) -> dict[str, Any]:
        """The settings in the JSON object `d` (any fields of a run's config.json), their types
        checked and converted (preprocessing to a Preprocessing, lists to tuples). An unknown
        key or a value of the wrong type is a one-line error naming `source` and the key."""
        if not isinstance(d, dict):
            raise CnnlabError(
                f"{source}: expected a JSON object of training settings, got {type(d).__name__}"
            )
        hints = get_type_hints(cls)
        unknown = sorted(set(d) - set(hints))
        if unknown:
            close = difflib.get_close_matches(unknown[0], hints, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CnnlabError(f"{source}: unknown settings {unknown}{hint}")
        settings = {}
        for name, value in d.items():
            if name == "augment" and isinstance(value, str):
                value = [value]  # one spec
            if name == "preprocessing" and isinstance(value, dict):
                value = _preprocessing(value, source)
            if not _conforms(value, hints[name]):
                raise CnnlabError(
                    f"{source}: {name}={value!r:.60}: expected {_describe(hints[name])}"
                )
            settings[name] = tuple(value) if isinstance(value, list) else value
        return settings


def _preprocessing(d: dict[str, Any], source: str) -> Preprocessing:
    """Preprocessing.from_dict, its errors made one line naming `source`."""
    try:
        return Preprocessing.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise CnnlabError(
            f"{source}: preprocessing {d!r:.60}: expected mode, mean, std and pad_to "
            f"({type(e).__name__}: {e})"
        ) from None
    except CnnlabError as e:
        raise CnnlabError(f"{source}: preprocessing: {e}") from None


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a setting's value is of the type its annotation names, as JSON can say it: a
    whole number is a number, a list a tuple, a bool no number; numbers must be finite."""
    args = get_args(hint)
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType) or get_origin(hint) is Union:
        return any(_conforms(value, arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return isinstance(value, numbers.Integral) or math.isfinite(value)
    if get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(_conforms(v, args[0]) for v in value)
    if get_origin(hint) is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    """The type an annotation names, in the words of a JSON file."""
    if isinstance(hint, types.UnionType) or get_origin(hint) is Union:
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if get_origin(hint) is tuple:
        return f"a list, each {_describe(get_args(hint)[0])}"
    if get_origin(hint) is dict:
        return "a JSON object"
    names = {bool: "true or false", int: "a whole number", float: "a finite number"}
    names |= {str: "a string", type(None): "null", Preprocessing: "a preprocessing object"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
