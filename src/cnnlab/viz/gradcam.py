"""Grad-CAM and Guided Grad-CAM: Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra,
"Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
ICCV 2017, Section 3; guided backpropagation: Springenberg, Dosovitskiy, Brox and
Riedmiller, "Striving for Simplicity: The All Convolutional Net", ICLR Workshop 2015,
Section 3.4.

Grad-CAM (Section 3, eqs. 1-2), for the feature maps A^k (K, h, w) of a chosen layer and
the unnormalised class score y^c (the logit, before the softmax):

    alpha_k^c = (1 / hw) sum_ij dy^c / dA^k_ij          (eq. 1: global average of gradients)
    L^c       = ReLU(sum_k alpha_k^c A^k)               (eq. 2: (h, w), the layer map)

upsampled bilinearly (align_corners=False) to the input's (H, W).

Guided backpropagation: the gradient dy^c/dx in which every ReLU's backward passes only
positive gradients at positive inputs, R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}. Every
ReLU counts: nn.ReLU (in place or not), F.relu, torch.relu, Tensor.relu and their in-place
forms, intercepted with a TorchFunctionMode (no module hooks, so functional ReLUs and
in-place ones are covered); other activations (tanh, ReLU6, LeakyReLU, ...) keep their
ordinary gradient, so a network without ReLUs (lenet5: tanh) gets its plain gradient.

Guided Grad-CAM (Section 3.1): guided backpropagation times the upsampled Grad-CAM map.
The paper keeps the colour channels of the guided gradient; here it is reduced like a
saliency map, max_k |G_k| per pixel, giving one (H, W) map per example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.errors import CnnlabError
from cnnlab.viz.saliency import Target, check_input, class_score, resolve_target


@dataclass
class GradCam:
    """A Grad-CAM result for a batch."""

    map: torch.Tensor  # (N, H, W) at input resolution (bilinear upsampling), >= 0
    layer_map: torch.Tensor  # (N, h, w) at the layer's resolution, >= 0
    layer: str  # the module name the maps were computed at
    target: torch.Tensor  # (N,) the class explained per example


def _stages(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "stages", ()) or ())


def _describe(output: Any) -> str:
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    return f"a {type(output).__name__}"


def _spatial(output: Any) -> bool:
    """A 4-D (N, C, H, W) tensor with more than one spatial position."""
    return isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-2:].numel() > 1


class _Recorder:
    """Forward hooks that keep the output of named modules (removed by `close`).

    Each hook hands the next layer a clone of the output, so that a later in-place
    operation (an in-place ReLU, `out += shortcut`) cannot overwrite the recorded maps.
    """

    def __init__(self, model: nn.Module, names: list[str], clone: bool) -> None:
        self.outputs: dict[str, Any] = {}
        self.calls: dict[str, int] = dict.fromkeys(names, 0)
        self.handles = []
        try:
            for name in names:
                self.handles.append(
                    model.get_submodule(name).register_forward_hook(self._hook(name, clone))
                )
        except BaseException:
            self.close()
            raise

    def _hook(self, name: str, clone: bool):
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            self.calls[name] += 1
            self.outputs[name] = output
            if clone and isinstance(output, torch.Tensor):
                return output.clone()
            return None

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _module_names(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_modules() if name}


def _check_layer(model: nn.Module, layer: str) -> None:
    if layer not in _module_names(model):
        stages = ", ".join(_stages(model)) or "none"
        raise CnnlabError(
            f"unknown layer {layer!r}: expected a module name of the model (its stages: {stages})"
        )


def _pick_stage(model: nn.Module, outputs: dict[str, Any], size: tuple[int, ...]) -> str:
    """The last stage whose output is (N, C, H, W) with H * W > 1."""
    spatial = [name for name in _stages(model) if _spatial(outputs.get(name))]
    if not spatial:
        stages = ", ".join(_stages(model)) or "none"
        raise CnnlabError(
            f"no stage of the model has a spatial output for input {tuple(size)} "
            f"(stages: {stages}); pass layer=NAME"
        )
    return spatial[-1]


def default_layer(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> str:
    """The Grad-CAM layer used when none is given.

    Rule: the last entry of `model.stages` whose output, for one input of `input_size`
    (default: `model.input_size`), is an (N, C, H, W) map with more than one spatial
    position (H * W > 1). A 1x1 map would make Grad-CAM a constant. LeNet-5 -> "s4"
    (5x5; C5 is 1x1), resnet20 -> "layer3", densenet40_k12 -> "final". Runs one forward
    pass of zeros without gradients, in eval mode; the modes are restored afterwards.
    """
    stages = _stages(model)
    if not stages:
        raise CnnlabError(f"{type(model).__name__} has no `stages`: pass layer=NAME")
    size = tuple(input_size or getattr(model, "input_size", ()))
    if len(size) != 3:
        raise CnnlabError(f"input_size {size}: expected (C, H, W)")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    modes = {m: m.training for m in model.modules()}
    recorder = _Recorder(model, list(stages), clone=False)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *size, device=device, dtype=dtype))
        return _pick_stage(model, recorder.outputs, size)
    finally:
        recorder.close()
        for module, training in modes.items():
            module.training = training


def grad_cam(
    model: nn.Module, x: torch.Tensor, target: Target = None, layer: str | None = None
) -> GradCam:
    """Grad-CAM of the class score at `layer` (default: see `default_layer`, applied to x's size).

    `layer`: any name in model.named_modules() whose output is (N, C, h, w) and which
    runs once per forward pass. Returns float32 CPU maps; parameters get no gradient.
    """
    check_input(model, x)
    if layer is None:
        if not _stages(model):
            raise CnnlabError(f"{type(model).__name__} has no `stages`: pass layer=NAME")
        names = list(_stages(model))
    else:
        _check_layer(model, layer)
        names = [layer]
    # The input requires a gradient so that a graph exists even if the parameters are frozen.
    inp = x.detach().clone().requires_grad_(True)  # (N, C, H, W)
    recorder = _Recorder(model, names, clone=True)
    try:
        with torch.enable_grad():
            logits = model(inp)  # (N, classes)
    finally:
        recorder.close()
    chosen = _pick_stage(model, recorder.outputs, tuple(x.shape[1:])) if layer is None else layer
    acts = recorder.outputs.get(chosen)
    if recorder.calls[chosen] == 0:
        raise CnnlabError(f"layer {chosen!r} did not run in the forward pass")
    if recorder.calls[chosen] > 1:
        raise CnnlabError(
            f"layer {chosen!r} runs {recorder.calls[chosen]} times per forward pass: "
            "expected a layer that runs once"
        )
    if not (isinstance(acts, torch.Tensor) and acts.dim() == 4):
        raise CnnlabError(
            f"layer {chosen!r} outputs {_describe(acts)}: Grad-CAM needs an (N, C, H, W) "
            f"feature map, e.g. one of the stages {', '.join(_stages(model)) or 'none'}"
        )
    t = resolve_target(logits, target)
    with torch.enable_grad():
        (grads,) = torch.autograd.grad(class_score(logits, t), acts, allow_unused=True)
    if grads is None:  # the layer does not feed the logits
        grads = torch.zeros_like(acts)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1), eq. 1
    cam = F.relu((alpha * acts.detach()).sum(dim=1, keepdim=True))  # (N, 1, h, w), eq. 2
    up = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return GradCam(
        map=up[:, 0].detach().float().cpu(),  # (N, H, W)
        layer_map=cam[:, 0].detach().float().cpu(),  # (N, h, w)
        layer=chosen,
        target=t.cpu(),
    )


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward keeps only positive gradients where the output is positive."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clamp(min=0)
        ctx.save_for_backward(out)  # the output, so an in-place copy cannot invalidate it
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return grad.clamp(min=0) * (out > 0)


_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}


class _GuidedReluMode(TorchFunctionMode):
    """Replaces every ReLU call (module, functional or method, in place or not) while active."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func in _RELU or func in _RELU_INPLACE:
            inp = args[0]
            inplace = func in _RELU_INPLACE or (
                func is F.relu and bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            )
            out = _GuidedReLU.apply(inp)
            return inp.copy_(out) if inplace else out  # in place: the caller's tensor changes
        return func(*args, **kwargs)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Guided backpropagation: (N, C, H, W) -> (N, C, H, W), float32 on the CPU."""
    check_input(model, x)
    inp = x.detach().clone().requires_grad_(True)  # (N, C, H, W)
    with torch.enable_grad():
        with _GuidedReluMode():
            logits = model(inp)  # (N, classes), the same values as a plain forward
        t = resolve_target(logits, target)
        (grad,) = torch.autograd.grad(class_score(logits, t), inp)
    return grad.detach().float().cpu()


def guided_grad_cam(
    model: nn.Module, x: torch.Tensor, target: Target = None, layer: str | None = None
) -> torch.Tensor:
    """max_k |guided backprop_k| times the upsampled Grad-CAM: (N, C, H, W) -> (N, H, W)."""
    cam = grad_cam(model, x, target, layer)
    guided = guided_backprop(model, x, cam.target)  # the class Grad-CAM explained
    return guided.abs().amax(dim=1) * cam.map  # (N, H, W)
