"""Data augmentation on whole batches of preprocessed tensors, on the batch's device.

Every random number comes from a `torch.Generator` seeded by (seed, epoch, step)
alone (`batch_generator`), so a run is reproducible and `--resume` sees exactly
the distortions an uninterrupted run would, without saving any generator state.
Augmentations move, mirror or recolour pixels; they never reorder the examples
of a batch, so its labels stay as they are.

Spec grammar (`cnnlab train --augment SPEC [SPEC ...]`, `TrainConfig.augment`),
one string per augmentation, applied in the order given:

    SPEC := NAME | NAME ":" VALUE | NAME ":" KEY=VALUE ("," KEY=VALUE)*
            (a bare VALUE sets the augmentation's first key, or names a preset)

    crop[:pad=4]          pad P pixels of background each side, crop back at a random offset
    flip[:p=0.5]          mirror left-right with probability p
    affine:lecun | affine:translate=T,scale=S,squeeze=Q,shear=H,rotate=R
                          random planar affine map, each parameter uniform in +-its range
                          (`lecun` sets translate=2,scale=0.1,squeeze=0.1,shear=0.15;
                          keys after it override it, e.g. affine:lecun,shear=0.3)
    elastic[:alpha=34,sigma=4]
                          random displacement field smoothed by a Gaussian
    pca[:std=0.1]         AlexNet's colour noise along the training set's RGB principal axes
    cutout[:size=8]       a size x size square of zeros at a random centre

e.g. `--augment crop:4 flip`, `--augment affine:lecun elastic:alpha=34,sigma=4 cutout:8 pca`.
Pixels that come from outside the image (crop, affine, elastic) take the background:
the preprocessed value of pixel 0, so MNIST digits stay on their background.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError


def batch_generator(seed: int, epoch: int, step: int, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded by (seed, epoch, step) alone, independent of the
    global RNG (initialisation, dropout) and of the loader's order."""
    digest = hashlib.blake2b(f"cnnlab-augment {seed} {epoch} {step}".encode(), digest_size=8)
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest.digest(), "little"))


@dataclass(frozen=True)
class AugmentContext:
    """What the augmentations need to know about the data, as (1, C, 1, 1) tensors.

    background: the preprocessed value of pixel 0 (fill for pixels from outside).
    slope: preprocessed units per unit of intensity in [0, 1] (converts PCA noise).
    colour: the training set's colour basis `(eigenvalues (C,), eigenvectors (C, C))`
            from `colour_basis`, or None when no augmentation needs it.
    """

    background: torch.Tensor
    slope: torch.Tensor
    colour: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_preprocessing(
        cls,
        preprocessing: Preprocessing,
        channels: int,
        colour: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> AugmentContext:
        pre = replace(preprocessing, pad_to=None)
        zero = pre(torch.zeros(1, channels, 1, 1, dtype=torch.uint8))
        full = pre(torch.full((1, channels, 1, 1), 255, dtype=torch.uint8))
        return cls(zero, full - zero, colour)

    def to(self, x: torch.Tensor) -> AugmentContext:
        """The context on x's device and dtype."""
        colour = None if self.colour is None else (self.colour[0].to(x), self.colour[1].to(x))
        return AugmentContext(self.background.to(x), self.slope.to(x), colour)


class Op(Protocol):
    """One augmentation: a batch (N, C, H, W) in, the same shape out."""

    def __call__(
        self, x: torch.Tensor, g: torch.Generator, ctx: AugmentContext
    ) -> torch.Tensor: ...


def _uniform(g: torch.Generator, x: torch.Tensor, *shape: int) -> torch.Tensor:
    """Uniform in [-1, 1) on x's device."""
    return torch.rand(*shape, generator=g, device=x.device, dtype=x.dtype) * 2 - 1


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise CnnlabError(message)


@dataclass(frozen=True)
class RandomCrop:
    """Pad `pad` pixels of background on each side, crop back to H x W at a random offset
    per example (the CIFAR recipe of He et al. 2016, Section 4.2): content moves by at
    most `pad` pixels in each direction."""

    pad: int = 4
    FIRST: ClassVar[str] = "pad"

    def __post_init__(self) -> None:
        _check(self.pad >= 0, f"pad {self.pad}: expected >= 0")

    def __call__(self, x: torch.Tensor, g: torch.Generator, ctx: AugmentContext) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.pad
        padded = ctx.background.expand(n, c, h + 2 * p, w + 2 * p).clone()
        padded[..., p : p + h, p : p + w] = x
        oy = torch.randint(0, 2 * p + 1, (n,), generator=g, device=x.device)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=g, device=x.device)
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (N, H)
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (N, W)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


@dataclass(frozen=True)
class Flip:
    """Mirror each example left-right with probability `p`."""

    p: float = 0.5
    FIRST: ClassVar[str] = "p"

    def __post_init__(self) -> None:
        _check(0 <= self.p <= 1, f"p {self.p}: expected a probability in [0, 1]")

    def __call__(self, x: torch.Tensor, g: torch.Generator, ctx: AugmentContext) -> torch.Tensor:
        chosen = torch.rand(x.shape[0], generator=g, device=x.device) < self.p
        return torch.where(chosen[:, None, None, None], x.flip(-1), x)


def _sample(x: torch.Tensor, grid: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling at `grid` (N, H, W, 2), background outside the image."""
    out = F.grid_sample(x - background, grid, "bilinear", "zeros", align_corners=False)
    return out + background


def _identity_grid(x: torch.Tensor) -> torch.Tensor:
    """Sampling positions of every pixel centre, (N, H, W, 2) in [-1, 1]."""
    eye = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(x.shape[0], 2, 3)
    return F.affine_grid(eye, list(x.shape), align_corners=False)


def affine_warp(
    x: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor, background: torch.Tensor
) -> torch.Tensor:
    """Move the content of each image by p -> matrix @ p + shift, p in pixels from the centre.

    x: (N, C, H, W); matrix: (N, 2, 2) acting on (x right, y down); shift: (N, 2) pixels
    (dx, dy). Each output pixel samples the input at matrix^-1 (p - shift), bilinearly.
    """
    n, _, h, w = x.shape
    to_pixels = torch.tensor([w / 2, h / 2], device=x.device, dtype=x.dtype)
    inverse = torch.linalg.inv(matrix)  # (N, 2, 2)
    theta = torch.empty(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, :, :2] = inverse * to_pixels[None, None, :] / to_pixels[None, :, None]
    theta[:, :, 2] = -(inverse @ shift[:, :, None])[:, :, 0] / to_pixels
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return _sample(x, grid, background)


@dataclass(frozen=True)
class Affine:
    """Random planar affine distortions, as LeCun et al. 1998 (Section III-C, Fig. 7) used
    to enlarge MNIST: translation, scaling, squeezing and horizontal shearing, with the
    parameters drawn per example (each uniform in +- its range).

    The map is rotate(r) . shear(h) . diag(s q, s / q) plus a translation (t_x, t_y):
    translate in pixels, scale s = 1 +- scale, squeeze q = 1 +- squeeze (horizontal
    compression with vertical elongation, or the reverse), shear h (x += h y), rotate r
    in degrees. The paper names the kinds but prints no ranges: the `lecun` preset's are
    ours, mild distortions like those of its Fig. 7.
    """

    translate: float = 0.0
    scale: float = 0.0
    squeeze: float = 0.0
    shear: float = 0.0
    rotate: float = 0.0
    FIRST: ClassVar[str | None] = None
    PRESETS: ClassVar[dict[str, dict[str, float]]] = {
        "lecun": {"translate": 2.0, "scale": 0.1, "squeeze": 0.1, "shear": 0.15},
    }

    def __post_init__(self) -> None:
        for name in ("translate", "scale", "squeeze", "shear", "rotate"):
            _check(getattr(self, name) >= 0, f"{name} {getattr(self, name)}: expected >= 0")
        for name in ("scale", "squeeze"):
            _check(getattr(self, name) < 1, f"{name} {getattr(self, name)}: expected < 1")

    def __call__(self, x: torch.Tensor, g: torch.Generator, ctx: AugmentContext) -> torch.Tensor:
        n = x.shape[0]
        u = _uniform(g, x, n, 6)
        shift = u[:, :2] * self.translate
        s, q = 1 + u[:, 2] * self.scale, 1 + u[:, 3] * self.squeeze
        h, r = u[:, 4] * self.shear, torch.deg2rad(u[:, 5] * self.rotate)
        zero, one = torch.zeros_like(s), torch.ones_like(s)
        stretch = torch.stack([s * q, zero, zero, s / q], 1).view(n, 2, 2)
        shear = torch.stack([one, h, zero, one], 1).view(n, 2, 2)
        rotation = torch.stack([r.cos(), -r.sin(), r.sin(), r.cos()], 1).view(n, 2, 2)
        return affine_warp(x, rotation @ shear @ stretch, shift, ctx.background)


def _blur_matrix(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """(size, size) Gaussian smoothing along one axis as a matrix: row i holds the weights
    of pixel i's neighbours within 3 sigma, the kernel normalised to sum 1 and pixels
    outside the image counting as zero (a zero-padded convolution, as one matmul)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(size, device=like.device, dtype=like.dtype)
    offset = t[:, None] - t[None, :]
    weights = torch.exp(-(offset**2) / (2 * sigma**2)) * (offset.abs() <= radius)
    taps = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    return weights / torch.exp(-(taps**2) / (2 * sigma**2)).sum()


@dataclass(frozen=True)
class Elastic:
    """Elastic distortion (Simard, Steinkraus and Platt 2003, Section 2): displacements
    uniform in [-1, 1] per pixel, smoothed by a Gaussian of `sigma` pixels, scaled by
    `alpha` pixels; the image is resampled bilinearly. Their MNIST values: sigma 4,
    alpha 34."""

    alpha: float = 34.0
    sigma: float = 4.0
    FIRST: ClassVar[str] = "alpha"

    def __post_init__(self) -> None:
        _check(self.alpha >= 0, f"alpha {self.alpha}: expected >= 0")
        _check(self.sigma > 0, f"sigma {self.sigma}: expected > 0")

    def __call__(self, x: torch.Tensor, g: torch.Generator, ctx: AugmentContext) -> torch.Tensor:
        n, _, h, w = x.shape
        noise = _uniform(g, x, n, 2, h, w)
        rows, cols = _blur_matrix(h, self.sigma, x), _blur_matrix(w, self.sigma, x)
        field = rows @ noise @ cols.T * self.alpha  # (N, 2, H, W) in pixels
        per_pixel = torch.tensor([2 / w, 2 / h], device=x.device, dtype=x.dtype)
        grid = _identity_grid(x) + field.permute(0, 2, 3, 1) * per_pixel  # (N, H, W, 2)
        return _sample(x, grid, ctx.background)


@torch.no_grad()
def colour_basis(dataset: ImageDataset, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (C,), largest first, and unit eigenvectors (C, C), one per column, of
    the covariance of pixel intensities in [0, 1] over every pixel of `dataset`
    (Krizhevsky et al. 2012, Section 4.1: "PCA on the set of RGB pixel values throughout
    the ImageNet training set")."""
    images = dataset.images
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    products = torch.zeros(c, c, dtype=torch.float64)
    for start in range(0, len(dataset), chunk):
        pixels = images[start : start + chunk].transpose(0, 1).reshape(c, -1)
        pixels = pixels.to(torch.float64) / 255  # (C, pixels in the chunk)
        total += pixels.sum(1)
        products += pixels @ pixels.T
    count = images.numel() // c
    mean = total / count
    covariance = products / count - torch.outer(mean, mean)
    values, vectors = torch.linalg.eigh(covariance)  # ascending
    return values.flip(0).clamp_min(0).float(), vectors.flip(1).float()


@dataclass(frozen=True)
class PCANoise:
    """AlexNet's colour noise (Krizhevsky et al. 2012, Section 4.1): add
    sum_i alpha_i lambda_i p_i to every pixel of an image, alpha_i ~ N(0, std) drawn once
    per image, (lambda_i, p_i) the eigenpairs of the training set's RGB covariance
    (`colour_basis`, intensities in [0, 1]: the paper does not state its scale)."""

    std: float = 0.1
    FIRST: ClassVar[str] = "std"

    def __post_init__(self) -> None:
        _check(self.std >= 0, f"std {self.std}: expected >= 0")

    def __call__(self, x: torch.Tensor, g: torch.Generator, ctx: AugmentContext) -> torch.Tensor:
        if ctx.colour is None:
            raise CnnlabError("pca colour noise needs the training set's colour basis")
        values, vectors = ctx.colour
        n, c = x.shape[:2]
        alpha = torch.randn(n, c, generator=g, device=x.device, dtype=x.dtype) * self.std
        shift = (alpha * values) @ vectors.T  # (N, C) in intensity units
        return x + shift.view(n, c, 1, 1) * ctx.slope


@dataclass(frozen=True)
class Cutout:
    """Cutout (DeVries and Taylor 2017): zero a size x size square, in every channel, at
    a centre drawn uniformly over the image; near a border the square is clipped."""

    size: int = 8
    FIRST: ClassVar[str] = "size"

    def __post_init__(self) -> None:
        _check(self.size >= 1, f"size {self.size}: expected >= 1")

    def __call__(self, x: torch.Tensor, g: torch.Generator, ctx: AugmentContext) -> torch.Tensor:
        n, _, h, w = x.shape
        cy = torch.randint(0, h, (n, 1), generator=g, device=x.device)
        cx = torch.randint(0, w, (n, 1), generator=g, device=x.device)
        rows = torch.arange(h, device=x.device) - (cy - self.size // 2)  # (N, H)
        cols = torch.arange(w, device=x.device) - (cx - self.size // 2)  # (N, W)
        inside_rows = (rows >= 0) & (rows < self.size)
        inside_cols = (cols >= 0) & (cols < self.size)
        square = inside_rows[:, :, None] & inside_cols[:, None, :]  # (N, H, W)
        return x.masked_fill(square[:, None], 0.0)


AUGMENTATIONS: dict[str, type] = {
    "crop": RandomCrop,
    "flip": Flip,
    "affine": Affine,
    "elastic": Elastic,
    "pca": PCANoise,
    "cutout": Cutout,
}


def _parse_value(cls: type, key: str, value: str) -> float | int:
    types = {f.name: f.type for f in fields(cls)}
    if key not in types:
        raise CnnlabError(f"unknown key {key!r}, expected one of {', '.join(types)}")
    try:
        number = int(value) if types[key] == "int" else float(value)
    except ValueError:
        raise CnnlabError(f"{key}={value!r}: expected {types[key]}") from None
    _check(math.isfinite(number), f"{key}={value!r}: expected a finite number")
    return number


def parse_spec(spec: str) -> Op:
    """One augmentation from its spec string (grammar in the module docstring)."""
    name, _, args = spec.partition(":")
    cls = AUGMENTATIONS.get(name)
    if cls is None:
        raise CnnlabError(
            f"--augment {spec!r}: unknown augmentation {name!r}, "
            f"expected one of {', '.join(AUGMENTATIONS)}"
        )
    kwargs: dict[str, float | int] = {}
    given: set[str] = set()
    try:
        for i, item in enumerate(args.split(",") if args else []):
            key, eq, value = item.partition("=")
            presets = getattr(cls, "PRESETS", {})
            if not eq and i == 0 and key in presets:
                kwargs.update(presets[key])
                continue
            if not eq:
                expected = "".join(f"a preset ({p}) or " for p in presets) + "KEY=VALUE"
                _check(i == 0 and cls.FIRST is not None, f"{item!r}: expected {expected}")
                key, value = cls.FIRST, key
            _check(key not in given, f"{key} given twice")
            given.add(key)
            kwargs[key] = _parse_value(cls, key, value)
        return cls(**kwargs)
    except CnnlabError as e:
        raise CnnlabError(f"--augment {spec!r}: {e}") from None


def parse_augment(specs: Sequence[str]) -> tuple[Op, ...]:
    """Every spec parsed and checked: a one-line CnnlabError for the first bad one."""
    if isinstance(specs, str):
        specs = (specs,)
    return tuple(parse_spec(spec) for spec in specs)


class Augment:
    """An ordered pipeline of augmentations for training batches.

    `Augment.for_dataset(("crop:4", "flip"), train_set, preprocessing)` builds it;
    `augment(x, seed=, epoch=, step=)` distorts a preprocessed (N, C, H, W) batch on its
    device, the same way every time for the same (seed, epoch, step).
    """

    def __init__(self, specs: Sequence[str], context: AugmentContext) -> None:
        self.ops = parse_augment(specs)
        self.context = context
        self._on: AugmentContext | None = None

    @classmethod
    def for_dataset(
        cls, specs: Sequence[str], dataset: ImageDataset, preprocessing: Preprocessing
    ) -> Augment:
        """The pipeline with the background of `preprocessing` and, when `pca` is asked
        for, the colour basis of `dataset` (the training split)."""
        ops = parse_augment(specs)
        colour = colour_basis(dataset) if any(isinstance(op, PCANoise) for op in ops) else None
        channels = dataset.image_shape[0]
        return cls(specs, AugmentContext.from_preprocessing(preprocessing, channels, colour))

    def __call__(self, x: torch.Tensor, *, seed: int, epoch: int, step: int) -> torch.Tensor:
        on = self._on
        if on is None or (on.background.device, on.background.dtype) != (x.device, x.dtype):
            self._on = self.context.to(x)
        g = batch_generator(seed, epoch, step, x.device)
        with torch.no_grad():
            for op in self.ops:
                x = op(x, g, self._on)
        return x
