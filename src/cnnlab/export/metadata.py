"""What an exported file records about its model, so that it can be used without cnnlab.

One JSON object, stored under the key "cnnlab" of an ONNX file's `metadata_props` and as the
extra file `cnnlab.json` of a TorchScript archive: the architecture and its arguments, the
input the model takes (N, C, H, W float32, after preprocessing), the preprocessing that turns
a dataset's uint8 image into that input (as `Preprocessing.to_dict`, and spelled out step by
step for a reader in another language), the class names in output order, and provenance
(dataset, epoch, metrics, cnnlab version).
"""

from __future__ import annotations

from typing import Any

from cnnlab import __version__
from cnnlab.checkpoint import CheckpointMeta
from cnnlab.data.preprocessing import Preprocessing

FORMAT_VERSION = 1
METADATA_KEY = "cnnlab"  # the ONNX metadata_props key
EXTRA_FILE = "cnnlab.json"  # the TorchScript extra file
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def input_shape(meta: CheckpointMeta) -> tuple[int, int, int]:
    """(C, H, W) of one model input: a dataset image's shape after its preprocessing."""
    _, height, width = meta.image_shape
    return (meta.in_chans, *meta.preprocessing.input_size(height, width))


def export_metadata(meta: CheckpointMeta) -> dict[str, Any]:
    """The JSON-ready metadata of an export of the checkpoint described by `meta`."""
    return {
        "format_version": FORMAT_VERSION,
        "cnnlab_version": __version__,
        "model": meta.model,
        "model_args": dict(meta.model_args),
        "num_classes": meta.num_classes,
        "classes": list(meta.classes),
        "input_name": INPUT_NAME,
        "input_shape": list(input_shape(meta)),
        "output_name": OUTPUT_NAME,
        "output": "logits (N, num_classes): softmax over the last axis gives the probabilities",
        "image_shape": list(meta.image_shape),
        "preprocessing": meta.preprocessing.to_dict(),
        "preprocessing_steps": preprocessing_steps(meta.preprocessing, meta.digits),
        "digits": meta.digits,
        "dataset": meta.dataset,
        "data_source": meta.data_source,
        "epoch": meta.epoch,
        "metrics": dict(meta.metrics),
    }


def preprocessing_steps(pre: Preprocessing, digits: bool) -> list[str]:
    """`pre` (and, for digit models, the MNIST framing of a user's image) in words."""
    steps = []
    if digits:
        steps.append(
            "a digit photo or drawing first goes the MNIST way: grey, white ink on black, "
            "its bounding box scaled into 20x20, centre of mass at the centre of 28x28"
        )
    steps.append("x = pixel / 255, channels first (C, H, W), uint8 pixels 0..255")
    if pre.mode == "lenet1998":
        steps.append("x = x * 1.275 - 0.1 (background 0 -> -0.1, ink 255 -> 1.175)")
    elif pre.mode == "meanstd":
        steps.append(f"x[c] = (x[c] - mean[c]) / std[c], mean {pre.mean}, std {pre.std}")
    if pre.pad_to is not None:
        steps.append(
            f"pad to at least {pre.pad_to}x{pre.pad_to}, the smaller half of the padding "
            "before (left, top), with the value a pixel of 0 takes after the steps above"
        )
    return steps
