"""Explanations by method name, for the CLI, the run report and the example figures.

Each method maps a batch to one (N, H, W) map at input resolution, larger where
the evidence for the target class is: the saliency map (Simonyan et al. 2013,
Section 3), Grad-CAM and Guided Grad-CAM (Selvaraju et al. 2017) and, for
occlusion (Zeiler and Fergus 2014, Section 4.2), the drop of the class
probability when a grey square covers the pixel (clipped at 0), so that all
four read the same way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError
from cnnlab.viz.gradcam import grad_cam, guided_grad_cam
from cnnlab.viz.occlusion import occlusion
from cnnlab.viz.overlay import plot_explanation, to_display, top_classes_text
from cnnlab.viz.saliency import saliency

METHODS = ("saliency", "gradcam", "guided-gradcam", "occlusion")
TITLES = {
    "saliency": "saliency",
    "gradcam": "Grad-CAM",
    "guided-gradcam": "Guided Grad-CAM",
    "occlusion": "occlusion (probability drop)",
}


@dataclass
class Explanation:
    method: str
    maps: torch.Tensor  # (N, H, W), float32, CPU
    target: torch.Tensor  # (N,) the class explained
    layer: str | None = None  # Grad-CAM's layer


def explain(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: int | Sequence[int] | torch.Tensor | None = None,
    layer: str | None = None,
) -> Explanation:
    """The `method` map of each example of `x` for `target` (default: the predicted class)."""
    if method not in METHODS:
        raise CnnlabError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    with torch.no_grad():
        probs = model(x).softmax(dim=1)
    if target is None:
        target = probs.argmax(dim=1)
    target = torch.as_tensor(target, device=x.device).expand(x.shape[0])
    if int(target.min()) < 0 or int(target.max()) >= probs.shape[1]:
        raise CnnlabError(f"target class {target.tolist()}: expected 0..{probs.shape[1] - 1}")
    if method == "saliency":
        return Explanation(method, saliency(model, x, target), target.cpu())
    if method == "gradcam":
        result = grad_cam(model, x, target, layer)
        return Explanation(method, result.map, target.cpu(), result.layer)
    if method == "guided-gradcam":
        used = grad_cam(model, x[:1], target[:1], layer).layer  # the layer actually used
        return Explanation(method, guided_grad_cam(model, x, target, layer), target.cpu(), used)
    clean = probs.gather(1, target[:, None]).cpu()[:, :, None]  # (N, 1, 1)
    return Explanation(method, (clean - occlusion(model, x, target)).clamp_min(0), target.cpu())


def explanation_figure(
    model: nn.Module,
    x: torch.Tensor,
    preprocessing: Preprocessing,
    classes: Sequence[str],
    methods: Sequence[str] = ("saliency", "gradcam"),
    target: int | None = None,
    layer: str | None = None,
    title: str = "",
) -> Figure:
    """Input, top-3 prediction, then one overlay per method, one row per example."""
    with torch.no_grad():
        logits = model(x)
    maps = {m: explain(model, x, m, target, layer) for m in methods}
    gradcam = maps.get("gradcam")
    if gradcam is not None and gradcam.layer:
        title = (title + "; " if title else "") + f"Grad-CAM at {gradcam.layer}"
    return plot_explanation(
        to_display(x, preprocessing),
        top_classes_text(logits, classes),
        maps["saliency"].maps if "saliency" in maps else None,
        gradcam.maps if gradcam is not None else None,
        extra={TITLES[m]: e.maps for m, e in maps.items() if m not in ("saliency", "gradcam")},
        title=title,
    )
