"""A checkpoint's model answering the server's requests, one at a time.

An image goes the way `cnnlab predict` takes a file (data/image_file.py): digit models
get MNIST's procedure (grey, the digit's box into 20x20, centred by its centre of mass in
28x28; LeCun et al. 1998), others a resize and centre crop; then the checkpoint's own
preprocessing. `explain` adds what the page shows inside the network: every stage's
feature maps (viz/feature_maps.py), the vector the classifier reads (LeNet-5's F6), the
distance to each class prototype for an RBF output (LeCun et al. 1998, eq. 7), and the
Grad-CAM (Selvaraju et al. 2017) and saliency (Simonyan et al. 2014) overlays.

Grad-CAM and the feature maps put hooks on the shared model, so every request holds one
lock from decoding to the last tensor: requests never see each other's hooks, and at
most one image is decoded in memory at a time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.checkpoint import load_checkpoint, resolve_checkpoint_path
from cnnlab.data.image_file import to_model_input
from cnnlab.layers.rbf_output import EuclideanRBF
from cnnlab.serve.image_bytes import MAX_PIXELS, decode_image
from cnnlab.serve.payload import image_url, numbers, overlay_url, stage_payload
from cnnlab.viz.feature_maps import feature_maps
from cnnlab.viz.gradcam import grad_cam
from cnnlab.viz.overlay import to_display
from cnnlab.viz.saliency import saliency

IMAGE_NAME = "the uploaded image"


class ModelSession:
    """The model of one checkpoint, its metadata, and the lock its requests share."""

    def __init__(
        self,
        checkpoint: str | Path,
        device: str | torch.device = "cpu",
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.path = resolve_checkpoint_path(checkpoint)
        self.model, self.meta = load_checkpoint(self.path, device)
        self.device = next(self.model.parameters()).device
        self.max_pixels = max_pixels
        self.rbf = isinstance(self.model.get_classifier(), EuclideanRBF)
        c, h, w = self.meta.image_shape
        self.input_size = (c, *self.meta.preprocessing.input_size(h, w))
        self.features_name = _producer(self.model, self.input_size, self.device)
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """What GET /api/model answers: the architecture, classes and input."""
        meta = self.meta
        return {
            "name": meta.model,
            "checkpoint": self.path.name,
            "classes": meta.classes,
            "num_classes": meta.num_classes,
            "channels": meta.in_chans,
            "image_size": list(meta.image_shape),  # a dataset image, before preprocessing
            "input_size": list(self.input_size),  # what the model reads
            "stages": list(self.model.stages),
            "digits": meta.digits,
            "output": "rbf" if self.rbf else "softmax",
            "dataset": meta.dataset,
            "epoch": meta.epoch,
            "metrics": meta.metrics,
            "preprocessing": meta.preprocessing.to_dict(),
            "max_pixels": self.max_pixels,
        }

    def _input(self, data: bytes) -> torch.Tensor:
        """Image bytes -> the preprocessed (1, C, H, W) batch on the model's device."""
        c, h, w = self.meta.image_shape
        image = decode_image(data, self.max_pixels)
        pixels = to_model_input(image, c, (h, w), self.meta.digits, name=IMAGE_NAME)
        return self.meta.preprocessing(pixels.unsqueeze(0).to(self.device))

    def _prediction(self, x: torch.Tensor, logits: torch.Tensor, k: int) -> dict[str, Any]:
        probs = logits[0].float().softmax(dim=0).cpu()
        top = probs.topk(max(1, min(k, probs.numel())))
        best = int(top.indices[0])
        classes = self.meta.classes
        return {
            "index": best,
            "class": classes[best],
            "probability": float(probs[best]),
            "top": [
                {"index": int(i), "class": classes[int(i)], "probability": float(p)}
                for p, i in zip(top.values, top.indices)
            ],
            "probabilities": probs.tolist(),
            "model_input": image_url(to_display(x[0], self.meta.preprocessing)),
        }

    def predict(self, data: bytes, k: int) -> dict[str, Any]:
        """The top-k classes, every class's probability and the input the model saw."""
        with self._lock, torch.no_grad():
            x = self._input(data)
            return self._prediction(x, self.model(x), k)

    def explain(self, data: bytes, k: int) -> dict[str, Any]:
        """`predict`'s answer plus each stage's maps, the classifier's input vector, the RBF
        distances (or None), and Grad-CAM and saliency overlays for the predicted class."""
        with self._lock:
            x = self._input(data)
            with torch.no_grad():
                features = self.model.forward_features(x)
                logits = self.model.forward_head(features)
            answer = self._prediction(x, logits, k)
            target = answer["index"]
            shown = to_display(x[0], self.meta.preprocessing)
            cam = grad_cam(self.model, x, target)
            answer["stages"] = [
                stage_payload(name, fmap) for name, fmap in feature_maps(self.model, x).items()
            ]
            answer["features"] = {"name": self.features_name, "values": numbers(features[0])}
            answer["rbf_distances"] = numbers(-logits[0]) if self.rbf else None
            answer["gradcam"] = {"layer": cam.layer, "image": overlay_url(shown, cam.map[0])}
            answer["saliency"] = {"image": overlay_url(shown, saliency(self.model, x, target)[0])}
            return answer


def _producer(model: nn.Module, input_size: tuple[int, int, int], device: torch.device) -> str:
    """The name of the last top-level module whose output has the shape of the classifier's
    input (LeNet-5: "f6"), from one forward pass of zeros; "features" when there is none."""
    classifier = model.get_classifier()
    found: list[str] = []

    def hook(name: str):
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.shape == shape:
                found.append(name)

        return record

    x = torch.zeros(1, *input_size, device=device)
    with torch.no_grad():
        shape = model.forward_features(x).shape
        handles = [
            child.register_forward_hook(hook(name))
            for name, child in model.named_children()
            if child is not classifier
        ]
        try:
            model.forward_features(x)
        finally:
            for handle in handles:
                handle.remove()
    return found[-1] if found else "features"
