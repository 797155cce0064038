"""Transfer learning: start from a trained checkpoint, freeze part of the network, and give
the backbone a smaller learning rate than the new head.

The lectures' rule (after Yosinski et al., "How transferable are features in deep neural
networks?", NIPS 2014): with few examples, freeze everything but the new softmax
classifier; with more, fine-tune more of the later layers, at a lower rate.

Freeze policies:
- "none": everything trains.
- "all-but-head": only the classifier trains (the head: `get_classifier()`, and GoogLeNet's
  auxiliary heads, the top-level modules named `output_*`).
- "stages:N": the first N entries of `model.stages` are frozen, with every module
  registered before them (a stem, a max pool); the rest trains.

A frozen batch-norm layer keeps its running statistics: `keep_frozen_norms_in_eval` puts
it back in evaluation mode after each `model.train()`, so it normalises with the
statistics it learned on the old data, and they do not move.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.checkpoint import CheckpointMeta, read_checkpoint, resolve_checkpoint_path
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models.classifier import Classifier

FREEZE_POLICIES = ("none", "all-but-head", "stages:N")


def parse_freeze(policy: str) -> int | None:
    """None for "none" and "all-but-head" (both kept by name), N for "stages:N".

    Checks the spelling only; `frozen_parameter_names` checks N against a model.
    """
    if policy in ("none", "all-but-head"):
        return None
    prefix, _, count = policy.partition(":")
    if prefix == "stages" and count.isascii() and count.isdigit() and int(count) >= 1:
        return int(count)
    raise CnnlabError(f"--freeze {policy!r}: expected none, all-but-head or stages:N with N >= 1")


def head_prefixes(model: Classifier) -> tuple[str, ...]:
    """Module names of the classifier(s): `get_classifier()` and any top-level `output_*`."""
    classifier = model.get_classifier()
    names = [name for name, module in model.named_modules() if module is classifier]
    names += [name for name, _ in model.named_children() if name.startswith("output_")]
    return tuple(dict.fromkeys(names))


def is_head(name: str, heads: tuple[str, ...]) -> bool:
    """Whether state-dict key or module `name` lies in one of the `heads`."""
    return any(name == h or name.startswith(h + ".") for h in heads)


def frozen_parameter_names(model: Classifier, policy: str) -> list[str]:
    """The names of the parameters `policy` freezes, in `named_parameters` order."""
    count = parse_freeze(policy)
    heads = head_prefixes(model)
    names = [name for name, _ in model.named_parameters()]
    if policy == "none":
        return []
    if policy == "all-but-head":
        return [n for n in names if not is_head(n, heads)]
    stages = model.stages
    if count > len(stages):
        raise CnnlabError(
            f"--freeze stages:{count}: {type(model).__name__} has {len(stages)} stages "
            f"({', '.join(stages)}); expected N <= {len(stages)}"
        )
    # every module registered up to the end of stage N (pre-order: forward order in cnnlab)
    order = [name for name, _ in model.named_modules() if name]
    last = stages[count - 1]
    end = max(i for i, n in enumerate(order) if n == last or n.startswith(last + "."))
    before = set(order[: end + 1])
    return [n for n in names if n.rpartition(".")[0] in before and not is_head(n, heads)]


@dataclass(frozen=True)
class FreezeReport:
    """How many parameters train and how many are frozen, and where."""

    policy: str
    trainable: int  # parameters (elements) that train
    frozen: int  # parameters that do not
    trainable_parts: tuple[str, ...]  # top-level modules with a trainable parameter
    frozen_parts: tuple[str, ...]  # top-level modules with every parameter frozen

    def __str__(self) -> str:
        return (
            f"freeze {self.policy}: {self.trainable:,} trainable parameters "
            f"({', '.join(self.trainable_parts)}), {self.frozen:,} frozen "
            f"({', '.join(self.frozen_parts) or '-'})"
        )


def freeze_report(model: nn.Module, policy: str) -> FreezeReport:
    """Count the trainable and frozen parameters of `model` as it stands."""
    trainable, frozen = {}, {}
    for name, p in model.named_parameters():
        part = name.partition(".")[0]
        target = trainable if p.requires_grad else frozen
        target[part] = target.get(part, 0) + p.numel()
    return FreezeReport(
        policy,
        sum(trainable.values()),
        sum(frozen.values()),
        tuple(trainable),
        tuple(p for p in frozen if p not in trainable),
    )


def apply_freeze(model: Classifier, policy: str) -> FreezeReport:
    """Set requires_grad=False on what `policy` freezes (nothing else is touched)."""
    frozen = set(frozen_parameter_names(model, policy))
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return freeze_report(model, policy)


def keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """Put back in evaluation mode every batch norm whose scale and shift are frozen.

    Call after `model.train()`: such a layer then normalises with its running statistics
    and leaves them unchanged (a batch norm without affine parameters is not covered).
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def parameter_groups(
    model: Classifier, lr: float, backbone_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """The trainable parameters for the optimiser: one group, in model order, or with
    `backbone_lr_mult` != 1 the head at `lr` then the backbone at `lr * backbone_lr_mult`
    (an empty group is left out)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if backbone_lr_mult == 1.0:
        return [{"params": [p for _, p in trainable]}]
    heads = head_prefixes(model)
    head = [p for n, p in trainable if is_head(n, heads)]
    backbone = [p for n, p in trainable if not is_head(n, heads)]
    groups = [{"params": head}, {"params": backbone, "lr": lr * backbone_lr_mult}]
    return [g for g in groups if g["params"]]


def load_pretrained_(model: Classifier, path: str | Path) -> tuple[Path, CheckpointMeta]:
    """Copy every weight but the classifier's from checkpoint `path` (a file or run
    directory) into `model`, whose classifier stays as built (fresh, for the new classes).

    Returns the checkpoint file and its metadata. Any other key or shape that differs is a
    one-line CheckpointError.
    """
    source = resolve_checkpoint_path(path)
    tensors, meta = read_checkpoint(source)
    heads = head_prefixes(model)
    own = {k: v for k, v in model.state_dict().items() if not is_head(k, heads)}
    theirs = {k: v for k, v in tensors.items() if not is_head(k, heads)}
    where = f"{source} ({meta.model}) does not fit {type(model).__name__}"
    missing, extra = sorted(own.keys() - theirs.keys()), sorted(theirs.keys() - own.keys())
    if missing or extra:
        first = f"it lacks {missing[0]!r}" if missing else f"it has an extra {extra[0]!r}"
        raise CheckpointError(f"{where}: {first} ({len(missing)} missing, {len(extra)} extra)")
    for key, value in own.items():
        if theirs[key].shape != value.shape:
            hint = ""
            if meta.in_chans != model.in_chans:
                hint = f"; it was trained on {meta.in_chans}-channel images, these have "
                hint += f"{model.in_chans}"
            raise CheckpointError(
                f"{where}: {key} is {tuple(theirs[key].shape)} there, "
                f"{tuple(value.shape)} here{hint}"
            )
    model.load_state_dict(theirs, strict=False)
    return source, meta


def transfer_section(
    init_from: str | None, report: FreezeReport, lr: float, backbone_lr_mult: float
) -> list[str]:
    """The run report's lines on where the run started and what trained."""
    lines = ["## Transfer", ""]
    if init_from:
        lines.append(
            f"- Started from `{init_from}`: every weight but the classifier's, which is new"
        )
    lines.append(f"- Parameters: {report}")
    if backbone_lr_mult != 1.0:
        lines.append(f"- Learning rate: head {lr:g}, backbone {lr * backbone_lr_mult:g}")
    return [*lines, ""]
