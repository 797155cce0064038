"""Image-specific class saliency: Simonyan, Vedaldi and Zisserman, "Deep Inside
Convolutional Networks: Visualising Image Classification Models and Saliency Maps",
ICLR Workshop 2014 (arXiv:1312.6034, 2013), Section 3.

For an image x (C, H, W) and a class c with unnormalised score S_c(x) (the logit, never
the softmax, Section 2), the saliency map is (Section 3, eq. 4 and after)

    w = dS_c / dx |_x                          (C, H, W)
    M_ij = max_k |w_{k,i,j}|                   (H, W)

Section 3.1 (weakly supervised object localisation) turns the map into an object mask:
the paper seeds a GraphCut colour segmentation with the pixels above the 95% saliency
quantile (foreground) and below the 30% quantile (background), then keeps the largest
connected component. `saliency_mask` implements a simplified version (see there).

`resolve_target` (the class per example, the predicted one by default, checked against
the number of classes) is shared by the other attribution modules of cnnlab.viz.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError

Target = int | Sequence[int] | torch.Tensor | None


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """One-line error unless x is an (N, C, H, W) batch the model accepts."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise CnnlabError(f"input of shape {shape}: expected a batch (N, C, H, W)")
    validate = getattr(model, "validate_input", None)
    if callable(validate):
        validate(tuple(x.shape[1:]))


def resolve_target(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The class index per example (N,) as int64 on logits' device; None -> predicted class."""
    n, num_classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    t = torch.as_tensor(target).reshape(-1)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise CnnlabError(f"target {target!r}: expected integer class indices")
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise CnnlabError(f"target has {t.numel()} entries for a batch of {n}: expected 1 or {n}")
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        raise CnnlabError(
            f"target {t[bad][0].item()} out of range: expected a class in 0..{num_classes - 1}"
        )
    return t.to(device=logits.device, dtype=torch.long)


def class_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of S_c per example (examples are independent in eval mode)."""
    return logits.gather(1, target.view(-1, 1)).sum()


def saliency(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """max_k |dS_c/dx_k| per pixel: (N, C, H, W) -> (N, H, W), float32 on the CPU.

    The model's parameters get no gradient (only the input's gradient is computed).
    """
    check_input(model, x)
    inp = x.detach().clone().requires_grad_(True)  # (N, C, H, W)
    with torch.enable_grad():
        logits = model(inp)  # (N, classes)
        t = resolve_target(logits, target)
        (grad,) = torch.autograd.grad(class_score(logits, t), inp)  # (N, C, H, W)
    return grad.abs().amax(dim=1).detach().float().cpu()  # (N, H, W)


def saliency_mask(saliency_map: torch.Tensor, quantile: float = 0.95) -> torch.Tensor:
    """Section 3.1, simplified: the largest 8-connected region of pixels above the quantile.

    saliency_map (N, H, W) or (H, W) -> bool mask of the same shape. Per image, the
    foreground seeds are the pixels whose saliency is strictly above the `quantile` of
    that image's map; of those, the largest 8-connected component is kept. What is
    simplified: the paper uses the seeds (with the pixels below the 30% quantile as
    background) to fit colour models and runs GraphCut, so its object region grows
    beyond the seeds along colour boundaries; here the region is the thresholded seeds
    only, with no colour model. An image whose map is constant gives an empty mask.
    """
    if not 0.0 < quantile < 1.0:
        raise CnnlabError(f"quantile={quantile}: expected a number strictly between 0 and 1")
    if saliency_map.dim() not in (2, 3):
        raise CnnlabError(
            f"saliency map of shape {tuple(saliency_map.shape)}: expected (N, H, W) or (H, W)"
        )
    maps = saliency_map.detach().float().cpu()
    single = maps.dim() == 2
    if single:
        maps = maps.unsqueeze(0)  # (1, H, W)
    n = maps.shape[0]
    thresholds = torch.quantile(maps.reshape(n, -1), quantile, dim=1)  # (N,)
    seeds = maps > thresholds.view(n, 1, 1)  # (N, H, W)
    mask = torch.stack([_largest_component(s) for s in seeds])
    return mask[0] if single else mask


def _largest_component(seeds: torch.Tensor) -> torch.Tensor:
    """The largest 8-connected component of a bool (H, W) mask (ties: the one ending first)."""
    if not seeds.any():
        return seeds.clone()
    h, w = seeds.shape
    fg = seeds.float()[None, None]  # (1, 1, H, W)
    # Every pixel starts with its own label; a component converges to its largest label.
    labels = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w) * fg
    while True:
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * fg  # spread over 8 neighbours
        if torch.equal(grown, labels):
            break
        labels = grown
    flat = labels.view(-1).long()
    counts = torch.bincount(flat, minlength=h * w + 1)
    counts[0] = 0  # background
    best = counts.argmax()
    return (flat == best).view(h, w)
