"""The resolved configuration of a training run: the model's recipe, overridden
by whatever the command line (or a caller) sets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cnnlab.data.augment import parse_augment
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError
from cnnlab.precision import PRECISIONS
from cnnlab.recipe import Recipe
from cnnlab.training.losses import check_label_smoothing
from cnnlab.training.transfer import parse_freeze


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
    seed: int = 0
    val_split: int = 0  # examples held out of the training set for validation
    limit_train: int | None = None  # use only the first N training examples
    limit_test: int | None = None  # use only the first N test examples
    augment: tuple[str, ...] = ()  # training-batch augmentations, cnnlab.data.augment's specs
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
        cfg = cls(model=model, **base)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise CnnlabError(
                    f"--{name.replace('_', '-')} {getattr(self, name)}: expected >= 1"
                )
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} {value}: expected >= 1")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise CnnlabError(f"--grad-clip {self.grad_clip}: expected a positive norm")
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
        parse_augment(self.augment)
        check_label_smoothing(self.loss, self.label_smoothing)
        if self.precision not in PRECISIONS:
            raise CnnlabError(
                f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}"
            )

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        d = json.loads(text)
        d["preprocessing"] = Preprocessing.from_dict(d["preprocessing"])
        d["milestones"] = tuple(d.get("milestones", ()))
        d["augment"] = tuple(d.get("augment", ()))
        return cls(**d)
