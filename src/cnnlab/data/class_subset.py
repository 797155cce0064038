"""Part of a dataset by class: only some classes, or the same number of examples of each.

Yosinski et al. ("How transferable are features in deep neural networks?", NIPS 2014)
split one dataset's classes into two tasks, A and B, train on A and transfer to B;
`keep_classes` makes such a task (MNIST digits 0-4, relabelled 0-4, and 5-9). The
lectures' rule for transfer depends on how many examples the new task has, so
`examples_per_class` draws a fixed number of each class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.errors import CnnlabError, DataError


def class_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Class names from "0,1,2" (a `--classes` value) or a sequence, without repeats."""
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names]
    if not names or "" in names:
        raise CnnlabError(f"--classes {value!r}: expected class names separated by commas")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CnnlabError(f"--classes {value!r}: {', '.join(repeated)} named twice")
    return tuple(names)


def keep_classes(dataset: ImageDataset, names: str | Sequence[str]) -> ImageDataset:
    """The examples of the classes `names`, labelled 0..k-1 in the dataset's order of classes
    (so "1,0" and "0,1" give the same task); images and order otherwise unchanged."""
    wanted = set(class_names(names))
    unknown = sorted(wanted - set(dataset.classes))
    if unknown:
        raise DataError(
            f"{dataset.name or 'dataset'} has no class {unknown[0]!r}: expected names from "
            f"{', '.join(dataset.classes)}"
        )
    kept = [i for i, name in enumerate(dataset.classes) if name in wanted]
    new_label = torch.full((len(dataset.classes),), -1, dtype=torch.long)
    new_label[kept] = torch.arange(len(kept))
    labels = new_label[dataset.labels]
    index = (labels >= 0).nonzero().squeeze(1)
    return ImageDataset(
        dataset.images[index],
        labels[index],
        tuple(dataset.classes[i] for i in kept),
        dataset.name,
    )


def examples_per_class(dataset: ImageDataset, n: int, seed: int) -> ImageDataset:
    """`n` examples of every class, drawn at random by `seed`, kept in the dataset's order.

    One seed draws nested samples: the 10 per class are among the 100 per class.
    """
    if n < 1:
        raise CnnlabError(f"{n} examples per class: expected >= 1")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    shuffled = dataset.labels[order]
    chosen = []
    for label, name in enumerate(dataset.classes):
        of_class = order[shuffled == label]
        if len(of_class) < n:
            raise DataError(
                f"{dataset.name or 'dataset'}: class {name!r} has {len(of_class)} examples, "
                f"expected at least {n}"
            )
        chosen.append(of_class[:n])
    index = torch.cat(chosen).sort().values
    return dataset.subset(index)
