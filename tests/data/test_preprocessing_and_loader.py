"""Per-batch preprocessing and the seeded in-memory loader."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import BatchLoader
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError, DataError


def _dataset(n: int = 10) -> ImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    return ImageDataset(images, torch.arange(n) % 3, ("a", "b", "c"), "toy")


def test_lenet1998_maps_background_and_ink_and_pads_with_background():
    pre = Preprocessing(mode="lenet1998", pad_to=8)
    x = pre(torch.full((1, 1, 4, 4), 255, dtype=torch.uint8))
    assert x.shape == (1, 1, 8, 8)
    assert x[0, 0, 0, 0].item() == pytest.approx(-0.1)
    assert x[0, 0, 4, 4].item() == pytest.approx(1.175)


def test_meanstd_pads_with_the_normalised_value_of_pixel_zero():
    pre = Preprocessing(mode="meanstd", mean=(0.5,), std=(0.25,), pad_to=6)
    x = pre(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    torch.testing.assert_close(x, torch.full((1, 1, 6, 6), -2.0))


def test_meanstd_broadcasts_one_mean_over_colour_channels():
    pre = Preprocessing(mode="meanstd", mean=(0.5,), std=(0.5,))
    x = pre(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    torch.testing.assert_close(x, torch.ones(1, 3, 2, 2))


def test_preprocessing_round_trips_through_a_dict_and_rejects_bad_values():
    pre = Preprocessing(mode="lenet1998", pad_to=32)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    with pytest.raises(CnnlabError):
        Preprocessing(mode="zca")


def test_shuffled_order_depends_on_seed_and_epoch_only():
    ds = _dataset(50)
    a = BatchLoader(ds, 8, Preprocessing(mode="unit"), shuffle=True, seed=1)
    b = BatchLoader(ds, 8, Preprocessing(mode="unit"), shuffle=True, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert torch.equal(a.order(), b.order())
    b.set_epoch(4)
    assert not torch.equal(a.order(), b.order())
    labels = torch.cat([y for _, y in a])
    assert sorted(
        (labels * 0 + torch.cat([x[:, 0, 0, 0] for x, _ in a]) * 255).round().long().tolist()
    ) == list(range(50))


def test_evaluation_order_is_the_dataset_order_with_a_short_last_batch():
    loader = BatchLoader(_dataset(10), 4, Preprocessing(mode="unit"))
    batches = [y.tolist() for _, y in loader]
    assert len(loader) == 3 and [len(b) for b in batches] == [4, 4, 2]


def test_split_holds_out_a_seeded_disjoint_subset():
    rest, held = _dataset(10).split(3, seed=0)
    values = sorted(rest.images[:, 0, 0, 0].tolist() + held.images[:, 0, 0, 0].tolist())
    assert len(held) == 3 and values == list(range(10))
    with pytest.raises(DataError, match="does not fit"):
        _dataset(10).split(10, seed=0)
