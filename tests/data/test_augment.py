"""Batch augmentations: each acts as specified, keeps examples in place, and is seeded."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.augment import (
    Affine,
    Augment,
    AugmentContext,
    Cutout,
    Elastic,
    Flip,
    PCANoise,
    RandomCrop,
    affine_warp,
    batch_generator,
    colour_basis,
    parse_augment,
)
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.preprocessing import MNIST_32, Preprocessing
from cnnlab.errors import CnnlabError

LENET = Preprocessing(mode="lenet1998")  # background -0.1


def _ctx(channels: int = 1, pre: Preprocessing = LENET, colour=None) -> AugmentContext:
    return AugmentContext.from_preprocessing(pre, channels, colour)


def _gen(step: int = 0) -> torch.Generator:
    return batch_generator(0, 0, step, torch.device("cpu"))


def _random_batch(n: int = 32, c: int = 1, size: int = 12) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(1)) + 1.0


def _digits(n: int = 16) -> torch.Tensor:
    """Digit-like strokes on the lenet1998 background: (N, 1, 32, 32)."""
    x = torch.full((n, 1, 32, 32), -0.1)
    for i in range(n):
        x[i, 0, 8 + i % 4 : 24, 14 + i % 3 : 18 + i % 3] = 1.175  # a vertical bar
        x[i, 0, 8:11, 10:22] = 1.175  # a top stroke
    return x


def test_background_is_the_preprocessed_value_of_pixel_zero():
    assert _ctx().background.flatten().tolist() == pytest.approx([-0.1])
    ctx = _ctx(3, Preprocessing(mode="meanstd", mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0)))
    assert ctx.background.flatten().tolist() == pytest.approx([-1.0, -1.0, 0.0])
    assert ctx.slope.flatten().tolist() == pytest.approx([2.0, 4.0, 1.0])
    assert _ctx(1, MNIST_32).background.shape == (1, 1, 1, 1)  # padding plays no part


def test_crop_shifts_content_by_at_most_pad_and_fills_with_background():
    x, pad = _random_batch(), 3
    out = RandomCrop(pad)(x, _gen(), _ctx())
    assert out.shape == x.shape
    padded = torch.full((32, 1, 12 + 2 * pad, 12 + 2 * pad), -0.1)
    padded[..., pad:-pad, pad:-pad] = x
    shifts = set()
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 12, dx : dx + 12])
        ]
        assert len(found) == 1, f"example {i} is not one crop of its padded self"
        shifts.add(found[0])
    assert len(shifts) > 10  # offsets are drawn per example


def test_flip_mirrors_exactly_the_chosen_examples():
    x = _random_batch(64)
    out = Flip(0.5)(x, _gen(), _ctx())
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # one or the other
    assert 16 < sum(flipped) < 48
    assert torch.equal(Flip(1.0)(x, _gen(), _ctx()), x.flip(-1))
    assert torch.equal(Flip(0.0)(x, _gen(), _ctx()), x)


def test_affine_with_zero_ranges_is_the_identity():
    x = _random_batch(8, 3, 15)
    out = Affine()(x, _gen(), _ctx(3))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_a_pure_translation_moves_a_bright_pixel_by_the_given_shift():
    x = torch.full((2, 1, 16, 20), -0.1)
    x[:, 0, 7, 9] = 1.175
    shift = torch.tensor([[3.0, -2.0], [-4.0, 5.0]])  # (dx, dy) in pixels
    out = affine_warp(x, torch.eye(2).expand(2, 2, 2), shift, _ctx().background)
    expected = torch.full_like(x, -0.1)
    expected[0, 0, 5, 12] = expected[1, 0, 12, 5] = 1.175
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_a_horizontal_shear_moves_a_pixel_in_proportion_to_its_height():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 12, 8] = 1.0  # centre at (12.5, 8.5): 4.5 rows below the image's centre (8, 8)
    shear = torch.tensor([[[1.0, 2 / 4.5], [0.0, 1.0]]])
    out = affine_warp(x, shear, torch.zeros(1, 2), torch.zeros(1, 1, 1, 1))
    assert out[0, 0, 12].argmax().item() == 10 and out.max().item() == pytest.approx(1.0)


def test_random_translation_moves_ink_within_the_range_and_keeps_it():
    x = torch.full((32, 1, 24, 24), -0.1)
    x[:, 0, 10:14, 10:14] = 1.175
    out = Affine(translate=3)(x, _gen(), _ctx())
    ink_in, ink_out = x + 0.1, out + 0.1
    grid = torch.arange(24.0)

    def centre(ink: torch.Tensor) -> torch.Tensor:
        mass = ink.sum((1, 2, 3))
        rows = (ink.sum((1, 3)) * grid).sum(1) / mass
        cols = (ink.sum((1, 2)) * grid).sum(1) / mass
        return torch.stack([rows, cols], 1)

    moved = centre(ink_out) - centre(ink_in)
    assert moved.abs().max() <= 3 + 1e-4
    assert moved.std(0).min() > 0.5  # per-example parameters
    torch.testing.assert_close(ink_out.sum((1, 2, 3)), ink_in.sum((1, 2, 3)))


def test_lecun_distortions_keep_digits_on_their_background():
    x = _digits()
    out = Affine(**Affine.PRESETS["lecun"])(x, _gen(), _ctx())
    assert not torch.allclose(out, x, atol=0.1)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    torch.testing.assert_close(out[..., border], x[..., border])  # -0.1 everywhere
    assert out.min() >= -0.1 - 1e-5 and out.max() <= 1.175 + 1e-5


def test_elastic_with_zero_alpha_is_the_identity():
    x = _random_batch(4, 2, 16)
    torch.testing.assert_close(Elastic(alpha=0.0)(x, _gen(), _ctx(2)), x, atol=1e-5, rtol=0)


def test_elastic_distortion_moves_pixels_and_roughly_keeps_the_ink():
    x = _digits(64)
    out = Elastic(alpha=34, sigma=4)(x, _gen(), _ctx())
    changed = ((out - x).abs() > 0.1).flatten(1).float().mean(1)
    assert changed.min() > 0.02  # every example is distorted
    ratio = (out + 0.1).sum((1, 2, 3)) / (x + 0.1).sum((1, 2, 3))
    # local stretching thins or thickens a stroke, but no more than twofold, and the
    # batch's ink is kept to within 10%
    assert ((ratio > 0.5) & (ratio < 2)).all() and abs(ratio.mean() - 1) < 0.1
    assert not torch.equal(out[0], out[1])


def test_colour_basis_is_the_eigendecomposition_of_the_pixel_covariance():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 6, 5), generator=g, dtype=torch.uint8)
    images[:, 1] = images[:, 0] // 2 + images[:, 1] // 2  # correlated channels
    values, vectors = colour_basis(ImageDataset(images, torch.zeros(40).long(), ("a",)), chunk=7)
    pixels = images.transpose(0, 1).reshape(3, -1).double() / 255
    covariance = torch.cov(pixels, correction=0).float()
    torch.testing.assert_close(vectors @ torch.diag(values) @ vectors.T, covariance)
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(3), atol=1e-5, rtol=0)
    assert values[0] >= values[1] >= values[2] >= 0


def test_pca_noise_adds_one_colour_vector_per_image_along_the_principal_axes():
    values = torch.tensor([0.2, 0.05, 0.01])
    vectors = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2)))[0]
    pre = Preprocessing(mode="meanstd", mean=(0.5, 0.5, 0.5), std=(0.2, 0.25, 0.5))
    ctx = _ctx(3, pre, (values, vectors))
    x = _random_batch(16, 3, 8)
    delta = PCANoise(std=0.1)(x, _gen(), ctx) - x
    per_image = delta[:, :, :1, :1]
    torch.testing.assert_close(delta, per_image.expand_as(delta), atol=1e-6, rtol=0)
    assert per_image.flatten(1).std(0).min() > 0  # drawn per image
    intensity = per_image.flatten(1) / ctx.slope.flatten()  # back to [0, 1] units
    alpha = (intensity @ vectors) / values  # the coefficients along each eigenvector
    assert alpha.abs().max() < 0.6 and 0.03 < alpha.std() < 0.2  # alpha ~ N(0, 0.1)


def test_cutout_zeroes_exactly_one_square_of_the_given_size_per_image():
    x, size = _random_batch(64, 3, 16), 6
    out = Cutout(size)(x, _gen(), _ctx(3))
    full = 0
    for i in range(64):
        zero = out[i] == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])
        torch.testing.assert_close(out[i][~zero], x[i][~zero], atol=0, rtol=0)
        rows = zero[0].any(1).nonzero().flatten()
        cols = zero[0].any(0).nonzero().flatten()
        assert len(rows) and len(cols)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert zero[0, r0:r1, c0:c1].all() and zero[0].sum() == (r1 - r0) * (c1 - c0)
        height, width = (r1 - r0).item(), (c1 - c0).item()
        assert height == size or r0 == 0 or r1 == 16  # clipped only at a border
        assert width == size or c0 == 0 or c1 == 16
        full += height == width == size
    assert full > 20


ALL = ("crop:2", "flip", "affine:lecun", "elastic:alpha=34,sigma=4", "cutout:4", "pca")


def _augment(specs=ALL) -> Augment:
    colour = (torch.tensor([0.01]), torch.ones(1, 1))
    return Augment(specs, _ctx(colour=colour))


def test_same_seed_epoch_and_step_give_the_same_batch_and_any_other_a_different_one():
    x, aug = _digits(), _augment()
    out = aug(x, seed=1, epoch=2, step=3)
    assert torch.equal(out, _augment()(x, seed=1, epoch=2, step=3))
    for other in (dict(seed=2, epoch=2, step=3), dict(seed=1, epoch=3, step=3)):
        assert not torch.equal(out, aug(x, **other))
    assert not torch.equal(out, aug(x, seed=1, epoch=2, step=4))


def test_augmentations_keep_every_example_in_its_place_so_labels_still_apply():
    values = torch.linspace(0.0, 1.0, 16)
    x = values.view(16, 1, 1, 1).expand(16, 1, 32, 32).clone()  # example i: constant values[i]
    out = _augment(ALL[:4])(x, seed=0, epoch=0, step=0)  # crop, flip, affine, elastic
    torch.testing.assert_close(out[:, 0, 16, 16], values, atol=1e-5, rtol=0)


def test_the_grammar_sets_the_first_key_presets_and_overrides():
    crop, flip, affine, elastic, cutout, pca = parse_augment(
        ("crop:4", "flip:p=0.25", "affine:lecun,shear=0.3", "elastic:sigma=6", "cutout:8", "pca")
    )
    assert crop == RandomCrop(pad=4) and flip == Flip(p=0.25) and cutout == Cutout(size=8)
    assert affine == Affine(translate=2, scale=0.1, squeeze=0.1, shear=0.3)
    assert elastic == Elastic(alpha=34, sigma=6) and pca == PCANoise(std=0.1)
    assert parse_augment("flip") == (Flip(),)


@pytest.mark.parametrize(
    "spec",
    [
        "rotate90",
        "crop:-1",
        "crop:four",
        "crop:1.5",
        "flip:p=2",
        "flip:q=0.5",
        "affine:wild",
        "affine:scale=1.5",
        "affine:shear=nan",
        "elastic:sigma=0",
        "elastic:alpha=34,alpha=30",
        "cutout:0",
        "pca:std",
        "crop:4,8",
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_spec(spec):
    with pytest.raises(CnnlabError) as e:
        parse_augment(("flip", spec))
    message = str(e.value)
    assert "\n" not in message and f"--augment {spec!r}" in message


def test_pca_without_a_colour_basis_is_a_clear_error():
    with pytest.raises(CnnlabError, match="colour basis"):
        Augment(("pca",), _ctx())(_digits(), seed=0, epoch=0, step=0)


def test_for_dataset_computes_the_colour_basis_only_when_pca_is_asked_for():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    ds = ImageDataset(images, torch.zeros(10).long(), ("a",))
    pre = Preprocessing(mode="unit")
    assert Augment.for_dataset(("flip",), ds, pre).context.colour is None
    values, vectors = Augment.for_dataset(("flip", "pca"), ds, pre).context.colour
    assert values.shape == (3,) and vectors.shape == (3, 3)
