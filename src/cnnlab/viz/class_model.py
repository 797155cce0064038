"""Class model visualisation: the input a network scores highest for a class.

Simonyan, Vedaldi and Zisserman, "Deep inside convolutional networks: visualising image
classification models and saliency maps", ICLR workshop 2014 (arXiv 1312.6034),
Section 2. For class c with unnormalised score S_c (the logit, before the softmax) the
class model is

    I* = argmax_I  S_c(I) - lambda * ||I||_2^2,

found by gradient ascent from the zero image, in the model's input space:

    I_0 = 0,   I_{t+1} = I_t + lr * (dS_c/dI (I_t) - 2 * lambda * I_t),   t < steps.

For a mean-normalised input the zero image is the training mean; to show I*, add the
mean back: `viz.overlay.to_display(I, preprocessing, stretch=True)` (stretched, since
I* has low contrast). The paper gives no lambda for its network; the defaults here
(steps=200, lr=0.1, l2=0.1, in the normalised input's units) were chosen on the LeNet-5
(`lenet5`) trained on MNIST of the tests: the ascent has converged by then (after 50
steps the image is within 0.025 of the 200-step one, whose largest |I| is 0.37; lr 0.05
or 0.3 change it by less than 0.006), the model classifies each class model as its class
with probability > 0.99, and each image correlates best with the mean training digit of
its own class for all 10 digits (own-class correlations 0.40-0.77, margins over the next
class 0.15-0.48); l2 from 0.001 to 1 does the same, 0.1 to 0.3 correlating best. All 10
digits take 0.7 s on one CPU core. Other networks may need other values (a larger lr
where the logits' gradients are small).

Caveat: an untrained ReLU network without biases (batch norm at its initial shift 0) has
all of its units at 0 for the zero image, where ReLU's gradient is 0: the image stays 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import CnnlabError

STEPS, LR, L2 = 200, 0.1, 0.1


def _ascend(
    model: nn.Module,
    targets: torch.Tensor,
    shape: tuple[int, int, int],
    steps: int,
    lr: float,
    l2: float,
) -> torch.Tensor:
    """Gradient ascent of S_t(I) - l2 ||I||^2 for each target t at once -> (K, C, H, W).

    In eval mode the examples of a batch do not interact, so the sum's gradient with
    respect to I_k is that of S_{t_k}(I_k) alone. Gradients are taken with respect to the
    input only (torch.autograd.grad): no parameter's .grad is touched.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    image = torch.zeros(len(targets), *shape, device=device, requires_grad=True)  # (K, C, H, W)
    index = targets.to(device).view(-1, 1)
    for step in range(steps):
        logits = model(image)  # (K, num_classes)
        if step == 0 and int(targets.max()) >= logits.shape[1]:
            raise CnnlabError(
                f"class {int(targets.max())}: expected a class in 0..{logits.shape[1] - 1}"
            )
        objective = logits.gather(1, index).sum() - l2 * image.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, image)
        with torch.no_grad():
            image += lr * grad
    return image.detach().float().cpu()


def class_models(
    model: nn.Module,
    classes: Sequence[int] | None = None,
    steps: int = STEPS,
    lr: float = LR,
    l2: float = L2,
    input_size: tuple[int, int, int] | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """Class model images (K, C, H, W) in input space for `classes` (default all).

    input_size (C, H, W) defaults to the model's. The model runs in eval mode and is put
    back in its own mode afterwards; its parameters and buffers are not changed.
    """
    shape = tuple(input_size or getattr(model, "input_size", ()))
    if len(shape) != 3:
        raise CnnlabError(
            f"input size {shape}: expected (C, H, W); pass input_size for a model without one"
        )
    if hasattr(model, "validate_input"):
        model.validate_input(shape)
    if classes is None:
        if int(getattr(model, "num_classes", 0)) < 1:
            raise CnnlabError(f"{type(model).__name__} has no num_classes: pass classes")
        classes = range(int(model.num_classes))
    targets = torch.as_tensor(list(classes), dtype=torch.long)
    count = int(getattr(model, "num_classes", 0))
    if targets.numel() == 0 or int(targets.min()) < 0 or (count and int(targets.max()) >= count):
        allowed = f"0..{count - 1}" if count else "indices >= 0"
        raise CnnlabError(f"classes {targets.tolist()}: expected classes in {allowed}")
    if steps < 0 or lr <= 0 or l2 < 0:
        raise CnnlabError(f"steps={steps}, lr={lr}, l2={l2}: expected steps >= 0, lr > 0, l2 >= 0")
    was_training = model.training
    try:
        model.eval()
        chunks = [
            _ascend(model, targets[i : i + batch_size], shape, steps, lr, l2)
            for i in range(0, len(targets), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def class_model(
    model: nn.Module,
    target: int,
    steps: int = STEPS,
    lr: float = LR,
    l2: float = L2,
    input_size: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """The class model image (C, H, W) of class `target`, in input space (see module doc)."""
    return class_models(model, [target], steps=steps, lr=lr, l2=l2, input_size=input_size)[0]


def plot_class_models(
    images: torch.Tensor,
    class_names: Sequence[str] | None = None,
    ncols: int | None = None,
    title: str = "",
) -> Figure:
    """A grid of class model images (K, C, H, W), already display pixels in [0, 1]
    (`to_display(..., stretch=True)`), each titled with its class name."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise CnnlabError(
            f"images of shape {tuple(images.shape)}: expected (K, C, H, W) with C = 1 or 3"
        )
    k = images.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise CnnlabError(f"{len(names)} class names for {k} images: expected one each")
    cols = ncols or min(k, 5)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(2 * cols, 2.2 * rows + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    pixels = images.detach().float().cpu().clamp(0, 1).numpy().transpose(0, 2, 3, 1)
    for ax, img, name in zip(axes, pixels, names):
        if img.shape[2] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(np.ascontiguousarray(img), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    for ax in axes[k:]:
        ax.remove()
    if title:
        fig.suptitle(title)
    return fig
