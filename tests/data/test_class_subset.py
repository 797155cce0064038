"""Part of a dataset by class: some classes relabelled, or n examples of each."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.class_subset import class_names, examples_per_class, keep_classes
from cnnlab.data.dataset import ImageDataset
from cnnlab.errors import CnnlabError, DataError

CLASSES = ("zero", "one", "two", "three")


def _dataset(labels: list[int]) -> ImageDataset:
    """Image i is filled with the value i, so each kept image tells where it came from."""
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return ImageDataset(images, torch.tensor(labels), CLASSES, "toy-train")


def test_keep_classes_keeps_their_examples_in_order_and_relabels_them() -> None:
    data = _dataset([0, 3, 1, 2, 3, 1, 0])
    kept = keep_classes(data, "three,one")
    assert kept.classes == ("one", "three")  # the dataset's order, not the spelling's
    assert kept.images[:, 0, 0, 0].tolist() == [1, 2, 4, 5]  # examples 1, 2, 4 and 5
    assert kept.labels.tolist() == [1, 0, 1, 0]
    assert [kept.classes[y] for y in kept.labels] == [CLASSES[y] for y in (3, 1, 3, 1)]
    assert kept.name == "toy-train" and kept.source == "toy"
    assert keep_classes(data, ["one", "three"]).labels.tolist() == kept.labels.tolist()


def test_keep_classes_of_mnist_style_names() -> None:
    data = ImageDataset(
        torch.zeros(10, 1, 2, 2, dtype=torch.uint8),
        torch.arange(10),
        tuple(str(d) for d in range(10)),
        "mnist-test",
    )
    upper = keep_classes(data, "5,6,7,8,9")
    assert upper.classes == ("5", "6", "7", "8", "9") and upper.labels.tolist() == [0, 1, 2, 3, 4]


def test_an_unknown_class_names_itself_and_the_classes() -> None:
    with pytest.raises(DataError, match=r"toy-train has no class 'four': expected .*zero, one"):
        keep_classes(_dataset([0, 1]), "one,four")


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "expected class names"), ("0,,1", "expected class names"), ("1,2,1", "1 named twice")],
)
def test_class_names_refuses_empty_and_repeated_names(value: str, message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        class_names(value)


def test_class_names_takes_a_string_or_a_sequence() -> None:
    assert class_names(" 0, 1,2 ") == ("0", "1", "2")
    assert class_names(["cat", "dog"]) == ("cat", "dog")


def test_examples_per_class_draws_n_of_each_reproducibly() -> None:
    labels = [i % 4 for i in range(40)]  # ten of each class
    data = _dataset(labels)
    a = examples_per_class(data, 3, seed=0)
    assert torch.bincount(a.labels, minlength=4).tolist() == [3, 3, 3, 3]
    picked = a.images[:, 0, 0, 0].tolist()
    assert picked == sorted(picked)  # the dataset's order
    assert [labels[i] for i in picked] == a.labels.tolist()  # each image keeps its label
    assert examples_per_class(data, 3, seed=0).images.equal(a.images)
    assert not examples_per_class(data, 3, seed=1).images.equal(a.images)


def test_one_seed_draws_nested_samples() -> None:
    data = _dataset([i % 4 for i in range(40)])
    few = set(examples_per_class(data, 2, seed=5).images[:, 0, 0, 0].tolist())
    more = set(examples_per_class(data, 6, seed=5).images[:, 0, 0, 0].tolist())
    assert few < more


def test_a_class_with_too_few_examples_is_an_error() -> None:
    data = _dataset([0, 0, 0, 1, 2, 2, 3, 3])
    with pytest.raises(DataError, match="class 'one' has 1 examples, expected at least 2"):
        examples_per_class(data, 2, seed=0)
    with pytest.raises(CnnlabError, match="0 examples per class: expected >= 1"):
        examples_per_class(data, 0, seed=0)
