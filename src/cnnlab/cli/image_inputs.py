"""Image files -> the batch a checkpoint's model reads, for predict, explain and visualize."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnlab.checkpoint import CheckpointMeta
from cnnlab.data.image_file import load_model_input


def load_batch(paths: Sequence[str], meta: CheckpointMeta, device: torch.device) -> torch.Tensor:
    """Each file brought to the training data's form (MNIST's centring for digit models),
    then preprocessed as in training: (N, C, H, W) on `device`."""
    c, h, w = meta.image_shape
    images = [load_model_input(path, c, (h, w), meta.digits) for path in paths]
    return meta.preprocessing(torch.stack(images).to(device))
