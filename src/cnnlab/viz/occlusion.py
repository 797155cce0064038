"""Occlusion sensitivity: Zeiler and Fergus, "Visualizing and Understanding Convolutional
Networks", ECCV 2014, Section 4.2 ("Occlusion Sensitivity", Fig. 7 (d)).

A square of side p, filled with a constant grey, is slid over the input with stride s,
at top-left corners (i, j) in {0, s, 2s, ...} plus the last position H - p (W - p) so the
whole image is covered. For each position the softmax probability of the target class

    P(i, j) = softmax(f(x with [i, i+p) x [j, j+p) set to `fill`))_c

is recorded (Fig. 7 (d): "a function of the position of the grey square"), and mapped back
to input resolution: the value of a pixel is the mean of P over all the positions whose
square covers it,

    M_uv = mean { P(i, j) : i <= u < i + p, j <= v < j + p }      (H, W)

Low values mark the regions the class depends on; p_clean - M (the drop in probability,
p_clean the probability of the unoccluded input) is the sensitivity, equal to Captum's
`Occlusion` attribution of the softmax output.

The grey: `fill=None` means 0 in the preprocessed input, which with mean/std
normalisation is the per-channel training mean, i.e. the dataset's average grey (the
paper's ImageNet inputs are mean-subtracted likewise). Pass a number (or one per
channel), in preprocessed units, for another fill.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.viz.saliency import Target, check_input, resolve_target


def _positions(size: int, patch: int, stride: int) -> list[int]:
    """Top-left corners 0, s, 2s, ... and the last one (size - patch), so every pixel is covered."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def default_patch(height: int, width: int) -> int:
    """A quarter of the shorter side (8 for 32x32 inputs, 56 for 224x224), at least 1."""
    return max(1, min(height, width) // 4)


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    patch: int | None = None,
    stride: int | None = None,
    fill: float | Sequence[float] | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Probability of the target class with a grey square over each pixel: (N, H, W).

    patch: side of the square (default `default_patch`: H // 4 for square inputs);
    stride: default patch // 2 (at least 1); fill: see the module docstring (default 0,
    the training mean); batch_size: occluded images per forward pass. No gradients.
    """
    check_input(model, x)
    n, c, h, w = x.shape
    patch = default_patch(h, w) if patch is None else patch
    stride = max(1, patch // 2) if stride is None else stride
    if not 1 <= patch <= min(h, w):
        raise CnnlabError(f"patch={patch}: expected a side from 1 to {min(h, w)} for {h}x{w}")
    if stride < 1:
        raise CnnlabError(f"stride={stride}: expected a positive integer")
    if batch_size < 1:
        raise CnnlabError(f"batch_size={batch_size}: expected a positive integer")
    values = torch.as_tensor(0.0 if fill is None else fill, dtype=x.dtype).reshape(-1)
    if values.numel() not in (1, c):
        raise CnnlabError(f"fill has {values.numel()} values: expected 1 or {c} (one per channel)")
    grey = values.to(x.device).view(-1, 1, 1).expand(c, patch, patch)  # (C, p, p)
    jobs = [
        (i, r, s) for i in range(n) for r in _positions(h, patch, stride)
        for s in _positions(w, patch, stride)
    ]  # fmt: skip
    total = torch.zeros(n, h, w, dtype=torch.float64)
    count = torch.zeros(n, h, w, dtype=torch.float64)
    x = x.detach()
    with torch.no_grad():
        t = resolve_target(model(x), target)  # (N,)
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            index = torch.tensor([i for i, _, _ in chunk], device=x.device)
            batch = x[index].clone()  # (B, C, H, W)
            for k, (_, r, s) in enumerate(chunk):
                batch[k, :, r : r + patch, s : s + patch] = grey
            probs = model(batch).float().softmax(dim=1)  # (B, classes)
            p = probs.gather(1, t[index].view(-1, 1)).view(-1).double().cpu()  # (B,)
            for k, (i, r, s) in enumerate(chunk):
                total[i, r : r + patch, s : s + patch] += p[k]
                count[i, r : r + patch, s : s + patch] += 1
    return (total / count).float()  # (N, H, W), every pixel covered at least once
