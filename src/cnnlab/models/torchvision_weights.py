"""torchvision-format state dicts onto the cnnlab networks that share their layout, so
that a user with internet can start from torchvision's ImageNet weights. torchvision is
never imported: a table renames its parameter names to cnnlab's.

Supported (the cnnlab variant of the same name, 3x224x224 inputs, normalised like
`cnnlab.data.preprocessing.IMAGENET`, which are torchvision's constants):
- resnet18, resnet34, resnet50, resnet101, resnet152: `conv1`/`bn1` -> `stem.0`/`stem.1`,
  `downsample` -> `shortcut` (option B projections in both), `fc` -> `output`.
  torchvision's ResNet-50/101/152 are "v1.5": the downsampling stride sits in each
  bottleneck's 3x3 convolution, not in the first 1x1 as in the paper, so they are built
  with `stride_at="3x3"` (the weights would load into the paper's v1 too, with the same
  shapes, and compute another function).
- vgg11, vgg13, vgg16, vgg19 and their `_bn` versions (configurations A, B, D, E):
  `features.N` (conv, [batch norm,] ReLU, ..., max pool) -> `blockB.convK.{conv,norm}`,
  `classifier.0/3/6` -> `fc1.0`, `fc2.0`, `output`. torchvision pools adaptively to 7x7,
  which is the identity at 224x224, cnnlab's input size.
- densenet121, densenet169, densenet201: `features.conv0`/`norm0` -> `stem.0`/`stem.1`,
  `denseblockB.denselayerL` -> `blockB.layerL`, `transitionT` -> `transitionT`,
  `norm5` -> `final.0`, `classifier` -> `output`; the old names of torchvision's
  downloaded files (`norm.1`, `conv.2`, ...) are accepted too.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models import densenet, resnet, vgg
from cnnlab.models.classifier import Classifier

_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_VGGS = ("vgg11", "vgg13", "vgg16", "vgg19")
_DENSENETS = ("densenet121", "densenet169", "densenet201")
SUPPORTED = (*_RESNETS, *_VGGS, *(f"{v}_bn" for v in _VGGS), *_DENSENETS)

_RESNET_RULES = (
    (r"^conv1$", "stem.0"),
    (r"^bn1$", "stem.1"),
    (r"^(layer\d+\.\d+)\.downsample\.", r"\1.shortcut."),
    (r"^fc$", "output"),
)
_DENSENET_RULES = (
    (r"^features\.conv0$", "stem.0"),
    (r"^features\.norm0$", "stem.1"),
    (
        r"^features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])$",
        r"block\1.layer\2.\3\4",
    ),
    (r"^features\.transition(\d+)\.", r"transition\1."),
    (r"^features\.norm5$", "final.0"),
    (r"^classifier$", "output"),
)


def _by_rules(rules: tuple[tuple[str, str], ...]) -> Callable[[str], str]:
    def rename(module: str) -> str:
        for pattern, replacement in rules:
            module = re.sub(pattern, replacement, module)
        return module

    return rename


def _vgg_table(model_name: str) -> dict[str, str]:
    """torchvision's `features.N` / `classifier.N` -> cnnlab's module names."""
    batch_norm = model_name.endswith("_bn")
    configuration = vgg.VARIANTS[model_name].config.configuration
    table, index = {}, 0
    for b, block in enumerate(vgg.TABLE_1[configuration], start=1):
        for k, _ in enumerate(block, start=1):  # conv, [BN,] ReLU
            table[f"features.{index}"] = f"block{b}.conv{k}.conv"
            if batch_norm:
                table[f"features.{index + 1}"] = f"block{b}.conv{k}.norm"
            index += 3 if batch_norm else 2
        index += 1  # the block's max pool
    table.update({"classifier.0": "fc1.0", "classifier.3": "fc2.0", "classifier.6": "output"})
    return table


def _family(model_name: str) -> tuple[Callable[[str], str | None], str, str]:
    """(module renamer, classifier weight key, first convolution weight key)."""
    if model_name in _RESNETS:
        return _by_rules(_RESNET_RULES), "fc.weight", "conv1.weight"
    if model_name in _DENSENETS:
        return _by_rules(_DENSENET_RULES), "classifier.weight", "features.conv0.weight"
    if model_name in SUPPORTED:
        return _vgg_table(model_name).get, "classifier.6.weight", "features.0.weight"
    raise CnnlabError(
        f"torchvision weights for {model_name!r}: not supported; expected one of "
        f"{', '.join(SUPPORTED)}"
    )


def torchvision_to_cnnlab_keys(model_name: str, keys: list[str]) -> dict[str, str]:
    """torchvision state-dict key -> cnnlab key, for the keys the table knows."""
    rename, _, _ = _family(model_name)
    out = {}
    for key in keys:
        module, _, leaf = key.rpartition(".")
        target = rename(module)
        if target is not None:
            out[key] = f"{target}.{leaf}"
    return out


def torchvision_overrides(model_name: str) -> dict[str, object]:
    """The config fields that make cnnlab's `model_name` compute what torchvision's does."""
    return {"stride_at": "3x3"} if model_name in _RESNETS[2:] else {}


def _build(model_name: str, num_classes: int, in_chans: int, **overrides: object) -> Classifier:
    family = resnet if model_name in _RESNETS else densenet if model_name in _DENSENETS else vgg
    return family.build(model_name, num_classes, in_chans, **overrides)


def load_torchvision_state_dict(
    model_name: str, state_dict: Mapping[str, torch.Tensor], **overrides: object
) -> Classifier:
    """The cnnlab model `model_name` (in eval mode) holding torchvision-format weights.

    The class count and input channels are read from the weights; `overrides` replace
    fields of the variant's config, after `torchvision_overrides`. A key or shape that does
    not fit is a CheckpointError.
    """
    _, classifier_key, first_conv_key = _family(model_name)
    for key in (classifier_key, first_conv_key):
        if key not in state_dict:
            raise CheckpointError(f"not a torchvision {model_name} state dict: it has no {key!r}")
    num_classes = state_dict[classifier_key].shape[0]
    in_chans = state_dict[first_conv_key].shape[1]
    model = _build(
        model_name, num_classes, in_chans, **{**torchvision_overrides(model_name), **overrides}
    )
    mapping = torchvision_to_cnnlab_keys(model_name, list(state_dict))
    unknown = [k for k in state_dict if k not in mapping]
    renamed = {mapping[k]: v for k, v in state_dict.items() if k in mapping}
    own = model.state_dict()
    extra = unknown + [k for k, c in mapping.items() if c not in own]
    # files saved before batch norm counted its batches have no num_batches_tracked
    missing = [k for k in own if k not in renamed and not k.endswith("num_batches_tracked")]
    if extra or missing:
        first = f"unexpected {extra[0]!r}" if extra else f"no weight for cnnlab's {missing[0]!r}"
        raise CheckpointError(
            f"the state dict does not fit torchvision's {model_name} layout: {first} "
            f"({len(extra)} unexpected, {len(missing)} missing)"
        )
    for key, value in renamed.items():
        if value.shape != own[key].shape:
            raise CheckpointError(
                f"the state dict does not fit {model_name}: {key} is {tuple(value.shape)} "
                f"there, {tuple(own[key].shape)} here"
            )
    model.load_state_dict(renamed, strict=False)
    return model.eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch.save file (read with
    weights_only=True, which refuses arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(str(path))
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only=True refused what the pickle would build
        raise CheckpointError(
            f"{path}: a pickle that builds more than tensors (refused, not run): expected a "
            "state dict saved with torch.save or safetensors"
        ) from None
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable state dict ({type(e).__name__})") from None
    if not isinstance(tensors, dict) or not all(
        isinstance(v, torch.Tensor) for v in tensors.values()
    ):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors)")
    return tensors
