"""Tests for bringing user image files to model inputs (MNIST-style digits, natural images)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cnnlab.data.image_file import load_image, load_model_input, to_mnist_digit, to_model_input
from cnnlab.data.mnist import load_mnist
from cnnlab.errors import DataError


def draw_digit(seed: int, ink: int = 0, paper: int = 255, size=(400, 300)) -> Image.Image:
    """A thick hand-drawn-looking '7' with a crossbar at a random place on a grey canvas."""
    rng = random.Random(seed)
    img = Image.new("L", size, paper)
    w, h = rng.randint(60, 110), rng.randint(120, 170)
    x, y = rng.randint(20, size[0] - w - 20), rng.randint(20, size[1] - h - 20)
    draw = ImageDraw.Draw(img)
    draw.line([(x, y + 8), (x + w, y), (x + w // 3, y + h)], fill=ink, width=12, joint="curve")
    draw.line([(x + w // 4, y + h // 2), (x + w - 10, y + h // 2)], fill=ink, width=10)
    return img


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def centre_of_mass(digit: torch.Tensor) -> tuple[float, float]:
    d = digit[0].double()
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    return float((d * ys).sum() / d.sum()), float((d * xs).sum() / d.sum())


def bounding_box_side(digit: torch.Tensor) -> int:
    rows = torch.nonzero(digit[0].any(dim=1)).flatten()
    cols = torch.nonzero(digit[0].any(dim=0)).flatten()
    return max(int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.double().flatten().numpy(), b.double().flatten().numpy())[0, 1])


def assert_mnist_like(digit: torch.Tensor) -> None:
    assert digit.dtype == torch.uint8 and digit.shape == (1, 28, 28)
    assert int(digit.max()) == 255
    assert float((digit == 0).double().mean()) > 0.5  # black background
    assert bounding_box_side(digit) in (19, 20, 21)
    cy, cx = centre_of_mass(digit)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dark_ink_on_light_paper_becomes_an_mnist_digit(tmp_path, seed):
    path = save(draw_digit(seed).convert("RGB"), tmp_path / "digit.png")
    assert_mnist_like(to_mnist_digit(load_image(path)))


def test_light_ink_on_dark_background_gives_the_same_polarity(tmp_path):
    dark_on_light = to_mnist_digit(load_image(save(draw_digit(3), tmp_path / "a.png")))
    light_on_dark = draw_digit(3, ink=255, paper=0)
    assert torch.equal(
        to_mnist_digit(load_image(save(light_on_dark, tmp_path / "b.png"))), dark_on_light
    )


def test_transparent_background_is_composited_onto_white(tmp_path):
    stroke = draw_digit(4)
    rgba = Image.new("RGBA", stroke.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(stroke, lambda v: 255 - v))  # black ink, transparent paper
    loaded = load_image(save(rgba, tmp_path / "digit.png"))
    assert loaded.mode == "RGB"
    assert torch.equal(to_mnist_digit(loaded), to_mnist_digit(draw_digit(4)))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_every_pixel_mode_is_accepted(tmp_path, mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    path = save(draw_digit(5).convert(mode), tmp_path / f"digit.{fmt.lower()}", format=fmt)
    assert load_image(path).mode in ("L", "RGB")
    assert pearson(to_mnist_digit(load_image(path)), to_mnist_digit(draw_digit(5))) > 0.95


def test_jpeg_noise_does_not_spoil_the_digit(tmp_path):
    path = save(draw_digit(6).convert("RGB"), tmp_path / "digit.jpg", quality=60)
    digit = to_mnist_digit(load_image(path))
    assert_mnist_like(digit)
    assert pearson(digit, to_mnist_digit(draw_digit(6))) > 0.95


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    eight = np.asarray(draw_digit(7), dtype=np.uint16)
    wide = Image.fromarray((eight * 240 + 1000).astype(np.uint16))  # ink 1000, paper 62200
    assert wide.mode == "I;16"
    digit = to_mnist_digit(load_image(save(wide, tmp_path / "digit16.png")))
    assert_mnist_like(digit)
    assert pearson(digit, to_mnist_digit(draw_digit(7))) > 0.99


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    path = save(Image.new("RGB", (40, 20), "white"), tmp_path / "photo.jpg", exif=exif)
    assert load_image(path).size == (20, 40)


def test_blank_image_has_no_digit(tmp_path):
    path = save(Image.new("RGB", (64, 48), (250, 250, 245)), tmp_path / "blank.jpg")
    with pytest.raises(
        DataError, match=re.escape("blank.jpg contains no digit: the image is blank")
    ):
        load_model_input(path, 1, (28, 28), mnist_style=True)


def _truncated_png(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "name, make",
    [
        ("missing.png", lambda p: None),
        ("folder.png", lambda p: p.mkdir()),
        ("empty.png", lambda p: p.write_bytes(b"")),
        ("notes.png", lambda p: p.write_text("not an image\n")),
        ("truncated.png", _truncated_png),
        ("bitmap.png", lambda p: Image.new("RGB", (8, 8)).save(p, format="BMP")),
    ],
)
def test_unreadable_files_raise_a_data_error_naming_the_file(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match=name) as caught:
        load_model_input(path, 1, (28, 28), mnist_style=True)
    assert "\n" not in str(caught.value)


def test_images_over_the_pixel_limit_are_refused(tmp_path):
    path = save(Image.new("L", (20, 20), 255), tmp_path / "big.png")
    with pytest.raises(DataError, match=r"big\.png.*exceeds the limit of 399 pixels"):
        load_image(path, max_pixels=399)
    assert load_image(path, max_pixels=400).size == (20, 20)


@pytest.mark.parametrize("side", [12, 20])  # Pillow warns above its limit, errors above twice it
def test_pillow_decompression_bomb_checks_become_data_errors(tmp_path, monkeypatch, side):
    path = save(Image.new("L", (side, side), 255), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match=r"bomb\.png.*decompression bomb"):
        load_image(path)


def test_natural_image_is_resized_and_centre_cropped():
    img = Image.new("RGB", (100, 50), "red")
    img.paste((0, 0, 255), (50, 0, 100, 50))  # left half red, right half blue
    x = to_model_input(img, 3, (32, 32), mnist_style=False)
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32)
    assert x[:, 16, 2].tolist() == [255, 0, 0] and x[:, 16, 29].tolist() == [0, 0, 255]
    assert to_model_input(img, 1, (24, 40), mnist_style=False).shape == (1, 24, 40)


def test_mnist_style_input_is_28x28_replicated_over_channels():
    x = to_model_input(draw_digit(8), 3, (28, 28), mnist_style=True)
    assert x.shape == (3, 28, 28) and torch.equal(x[0], x[2])
    with pytest.raises(DataError, match="28x28, got 32x32"):
        to_model_input(draw_digit(8), 1, (32, 32), mnist_style=True)


def test_real_mnist_digits_survive_rendering_and_renormalisation(tmp_path, mnist_data_dir):
    _, test = load_mnist(mnist_data_dir, download=False)
    correlations = []
    for i, original in enumerate(test.images[:20]):
        page = Image.fromarray(255 - original[0].numpy()).resize((140, 140), Image.BILINEAR)
        rendered = to_mnist_digit(load_image(save(page, tmp_path / f"mnist{i}.png")))
        correlations.append(pearson(rendered, original))
    assert np.mean(correlations) > 0.8, correlations
