"""Maps over their input images, and input, prediction and explanations side by side.

The figure layout is that of Selvaraju et al., "Grad-CAM: Visual explanations from deep
networks via gradient-based localization", ICCV 2017, Fig. 1 (input, then one
explanation per column); the saliency maps are those of Simonyan, Vedaldi and Zisserman,
"Deep inside convolutional networks", ICLR workshop 2014 (arXiv 1312.6034), Section 3.
The maps themselves are computed elsewhere (viz.saliency, viz.gradcam): this module
only draws them.

Overlay formula: with the map normalised to h = (m - min m) / (max m - min m) in [0, 1]
(h = 0 everywhere for a constant map) and colour(h) from the colour map,
    out = (1 - alpha * h) * image + alpha * h * colour(h),
so the colour's weight grows with the map and where the map is 0 the image shows unchanged.

`to_display` inverts cnnlab's Preprocessing (data/preprocessing.py):
    meanstd:   pixel = x * std + mean (per channel),
    lenet1998: pixel = (x + 0.1) / 1.275,
    unit:      pixel = x,
then clips to [0, 1] (or, with stretch=True, scales each image's range to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError

ArrayLike = torch.Tensor | np.ndarray


def to_display(
    x: torch.Tensor, preprocessing: Preprocessing, stretch: bool = False
) -> torch.Tensor:
    """Model input (C, H, W) or (N, C, H, W) -> float32 CPU pixels in [0, 1], same shape.

    Undoes the preprocessing's normalisation (not its padding). Values outside [0, 1] are
    clipped, unless `stretch`: then each image's own range is scaled to [0, 1] (for class
    model images, whose contrast is low; a constant image becomes 0).
    """
    if x.ndim not in (3, 4):
        raise CnnlabError(f"input of shape {tuple(x.shape)}: expected (C, H, W) or (N, C, H, W)")
    batch = x.detach().float().cpu()
    batch = batch.unsqueeze(0) if x.ndim == 3 else batch
    channels = batch.shape[1]
    mode = preprocessing.mode
    if mode == "meanstd":
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32)
        std = torch.tensor(preprocessing.std, dtype=torch.float32)
        if mean.numel() == 1:
            mean, std = mean.expand(channels), std.expand(channels)
        if mean.numel() != channels:
            raise CnnlabError(
                f"input has {channels} channel(s) but the preprocessing's mean has "
                f"{len(preprocessing.mean)}: expected 1 or {channels}"
            )
        pixels = batch * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    elif mode == "lenet1998":
        pixels = (batch + 0.1) / 1.275
    else:  # unit
        pixels = batch
    if stretch:
        lo = pixels.amin(dim=(1, 2, 3), keepdim=True)
        span = pixels.amax(dim=(1, 2, 3), keepdim=True) - lo
        pixels = torch.where(span > 0, (pixels - lo) / span.clamp_min(1e-12), 0.0)
    else:
        pixels = pixels.clamp(0.0, 1.0)
    return pixels[0] if x.ndim == 3 else pixels


def _numpy(a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float32)


def _rgb(image: ArrayLike) -> np.ndarray:
    """(C, H, W) with C in {1, 3}, or (H, W), in [0, 1] -> (H, W, 3) float32."""
    img = _numpy(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise CnnlabError(
            f"image of shape {img.shape}: expected (C, H, W) with 1 or 3 channels, or (H, W)"
        )
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise CnnlabError(
            f"image values span [{lo:.3g}, {hi:.3g}]: expected display pixels in [0, 1] "
            "(map model inputs back with to_display)"
        )
    img = np.clip(img, 0.0, 1.0).transpose(1, 2, 0)
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def normalize_map(heatmap: ArrayLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) or (1, H, W) map -> (H, W) float32 in [0, 1] (min-max; constant -> 0).

    With `size`, a map of another size (a layer's Grad-CAM) is first resized bilinearly.
    """
    m = torch.as_tensor(_numpy(heatmap))
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise CnnlabError(f"heatmap of shape {tuple(m.shape)}: expected (H, W)")
    m = torch.nan_to_num(m)
    if size is not None and tuple(m.shape) != tuple(size):
        m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    lo, span = m.min(), m.max() - m.min()
    return ((m - lo) / span if span > 0 else torch.zeros_like(m)).numpy().astype(np.float32)


def heatmap_overlay(
    image: ArrayLike, heatmap: ArrayLike, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """Image (C, H, W) in [0, 1] with a map (H, W) over it -> (H, W, 3) float32 in [0, 1].

    The map is normalised to [0, 1] (resized to the image if needed) and blended in with a
    weight alpha * map per pixel: a zero (or constant) map leaves the image as it was.
    """
    if not 0.0 <= alpha <= 1.0:
        raise CnnlabError(f"alpha={alpha}: expected a value in [0, 1]")
    rgb = _rgb(image)  # (H, W, 3)
    h = normalize_map(heatmap, rgb.shape[:2])[..., None]  # (H, W, 1)
    try:
        colour = matplotlib.colormaps[cmap](h[..., 0])[..., :3]  # (H, W, 3)
    except KeyError:
        raise CnnlabError(f"unknown colour map {cmap!r}: expected a matplotlib name") from None
    out = (1.0 - alpha * h) * rgb + alpha * h * colour
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def top_classes_text(
    logits: torch.Tensor, class_names: Sequence[str] | None = None, k: int = 3
) -> list[str]:
    """Logits (N, K) or (K,) -> one text per example: its top-k classes and probabilities."""
    z = logits.detach().float().cpu()
    z = z.unsqueeze(0) if z.ndim == 1 else z
    probs = z.softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(z.shape[1])]
    return [
        "\n".join(f"{names[c]}: {100 * p:.1f}%" for p, c in zip(ps.tolist(), cs.tolist()))
        for ps, cs in zip(top.values, top.indices)
    ]


def _batch_of_maps(maps: ArrayLike | None, n: int, what: str) -> list[np.ndarray] | None:
    if maps is None:
        return None
    a = _numpy(maps)
    a = a[None] if a.ndim == 2 else a
    if a.ndim != 3 or a.shape[0] != n:
        raise CnnlabError(f"{what} of shape {_numpy(maps).shape}: expected ({n}, H, W) or (H, W)")
    return list(a)


def plot_explanation(
    image: ArrayLike,
    prediction_text: str | Sequence[str],
    saliency: ArrayLike | None,
    gradcam: ArrayLike | None,
    extra: Mapping[str, ArrayLike] | None = None,
    alpha: float = 0.5,
    title: str = "",
) -> Figure:
    """One row per image: input, prediction text, saliency and Grad-CAM overlays, then one
    overlay per entry of `extra` ({column title: maps}, e.g. occlusion).

    image: (C, H, W) or (N, C, H, W) display pixels in [0, 1] (see to_display);
    prediction_text: one string per image (see top_classes_text); saliency, gradcam: maps
    (N, H, W) or (H, W), already computed; a None map leaves its column out.
    Axes: N * (2 + number of maps given).
    """
    imgs = _numpy(image)
    imgs = imgs[None] if imgs.ndim == 3 else imgs
    if imgs.ndim != 4:
        raise CnnlabError(
            f"image of shape {_numpy(image).shape}: expected (C, H, W) or (N, C, H, W)"
        )
    n = imgs.shape[0]
    texts = [prediction_text] if isinstance(prediction_text, str) else list(prediction_text)
    if len(texts) != n:
        raise CnnlabError(f"{len(texts)} prediction texts for {n} images: expected one each")
    columns: list[tuple[str, list[np.ndarray]]] = []
    for name, maps in (("saliency", saliency), ("Grad-CAM", gradcam), *(extra or {}).items()):
        batch = _batch_of_maps(maps, n, name)
        if batch is not None:
            columns.append((name, batch))
    ncols = 2 + len(columns)
    fig = Figure(figsize=(2.4 * ncols, 2.5 * n + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(n, ncols, squeeze=False)
    for i in range(n):
        rgb = _rgb(imgs[i])
        axes[i, 0].imshow(rgb, interpolation="nearest")
        axes[i, 1].text(0.05, 0.5, texts[i], va="center", ha="left", family="monospace")
        for j, (_, batch) in enumerate(columns, start=2):
            axes[i, j].imshow(heatmap_overlay(imgs[i], batch[i], alpha=alpha))
        if i == 0:
            for j, name in enumerate(["input", "prediction", *(c[0] for c in columns)]):
                axes[0, j].set_title(name, fontsize=10)
        for ax in axes[i]:
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig
