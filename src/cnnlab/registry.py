"""The model registry: every architecture by name, with its default recipe.

Families declare their variants as data (a `VARIANTS` table and a `build`
function in their module); this file lists the families explicitly, so nothing
registers itself by the side effect of an import.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.models import (
    alexnet,
    convnet,
    densenet,
    googlenet,
    lenet,
    mobilenet,
    resnet,
    shufflenet,
    vgg,
)
from cnnlab.models.classifier import Classifier
from cnnlab.models.variant import PaperFigure, Variant
from cnnlab.recipe import Recipe

FAMILIES: tuple[ModuleType, ...] = (
    lenet,
    alexnet,
    vgg,
    googlenet,
    resnet,
    densenet,
    mobilenet,
    shufflenet,
    convnet,
)


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one model name."""

    name: str
    family: str
    variant: Variant
    family_module: ModuleType

    @property
    def description(self) -> str:
        return self.variant.description

    @property
    def recipe(self) -> Recipe:
        return self.variant.recipe

    @property
    def config(self) -> Any:
        """The family's frozen config dataclass for this variant."""
        return self.variant.config

    @property
    def num_classes(self) -> int:
        return self.variant.num_classes

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.variant.input_size

    @property
    def published(self) -> tuple[PaperFigure, ...]:
        return self.variant.published

    @property
    def paper(self) -> str:
        """The first line of the family's docstring: its paper."""
        return inspect.getdoc(self.family_module).split("\n\n")[0].replace("\n", " ")


def _collect() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for module in FAMILIES:
        family = module.__name__.rsplit(".", 1)[-1]
        for name, variant in module.VARIANTS.items():
            if name in specs:
                raise RuntimeError(f"model name {name!r} is registered twice")
            specs[name] = ModelSpec(name, family, variant, module)
    return specs


_SPECS = _collect()


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style `pattern`, sorted."""
    return sorted(n for n in _SPECS if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    """The spec of `name`; an unknown name fails with the closest matches."""
    if name not in _SPECS:
        close = difflib.get_close_matches(name, list(_SPECS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CnnlabError(f"unknown model {name!r}{hint} (`cnnlab models` lists all {len(_SPECS)})")
    return _SPECS[name]


def create_model(
    name: str, num_classes: int | None = None, in_chans: int | None = None, **overrides: Any
) -> Classifier:
    """Build model `name`; `overrides` set fields of its family's config dataclass.

    `num_classes` and `in_chans` default to the variant's (1,000 and 3 for the
    ImageNet networks, 10 and 1 for LeNet-5).
    """
    spec = get_spec(name)
    num_classes = spec.num_classes if num_classes is None else num_classes
    in_chans = spec.input_size[0] if in_chans is None else in_chans
    allowed = {f.name for f in fields(spec.config)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise CnnlabError(
            f"{name} has no option {', '.join(unknown)}: "
            f"expected some of {', '.join(sorted(allowed))}"
        )
    if num_classes < 1 or in_chans < 1:
        raise CnnlabError(
            f"num_classes={num_classes}, in_chans={in_chans}: both must be positive integers"
        )
    return spec.family_module.build(name, num_classes=num_classes, in_chans=in_chans, **overrides)
