"""`cnnlab import-weights resnet18 resnet18-f37072fd.pth --out resnet18.safetensors`:
a torchvision-format state dict as a cnnlab checkpoint.

The checkpoint then works with every command that takes one: `eval`, `predict`,
`explain`, `visualize`, and `finetune`, which is how a user with internet starts from
torchvision's ImageNet weights. The file is read without unpickling code (safetensors,
or torch.load with weights_only=True); see cnnlab.models.torchvision_weights for the
layouts that map.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.checkpoint import CheckpointMeta, save_checkpoint
from cnnlab.data.preprocessing import IMAGENET
from cnnlab.errors import CnnlabError
from cnnlab.models.torchvision_weights import (
    SUPPORTED,
    load_torchvision_state_dict,
    read_state_dict,
    torchvision_overrides,
)

EXAMPLE = """examples:
  cnnlab import-weights resnet18 resnet18-f37072fd.pth --out resnet18-imagenet.safetensors \\
      --classes imagenet_classes.txt
  cnnlab finetune resnet18-imagenet.safetensors --data my_photos/ --freeze all-but-head"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-weights",
        help="turn a torchvision-format state dict into a cnnlab checkpoint",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=f"the architecture: {', '.join(SUPPORTED)}")
    p.add_argument("state_dict", help="a .pth/.pt (torch.save) or .safetensors state dict")
    p.add_argument("--out", required=True, help="the checkpoint to write (.safetensors)")
    p.add_argument(
        "--classes",
        metavar="FILE",
        help="class names, one per line, in the classifier's order (default 0, 1, 2, ...)",
    )
    p.add_argument(
        "--input-size", type=int, default=224, help="the side of the images it expects (224)"
    )
    p.set_defaults(func=run)


def read_class_names(path: str, count: int) -> list[str]:
    """`count` class names from a text file, one per line (blank lines ignored)."""
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise CnnlabError(f"--classes {path}: not a readable text file ({e})") from None
    if len(names) != count:
        raise CnnlabError(
            f"--classes {path}: {len(names)} names, but the classifier has {count} outputs"
        )
    return names


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CnnlabError(f"--out {out}: expected a .safetensors file name")
    model = load_torchvision_state_dict(args.model, read_state_dict(args.state_dict))
    count = model.num_classes
    classes = (
        read_class_names(args.classes, count) if args.classes else [str(i) for i in range(count)]
    )
    side = args.input_size
    model.validate_input((model.in_chans, side, side))
    meta = CheckpointMeta(
        model=args.model,
        num_classes=count,
        in_chans=model.in_chans,
        preprocessing=IMAGENET,
        classes=classes,
        image_shape=(model.in_chans, side, side),
        model_args=torchvision_overrides(args.model),
        data_source=f"torchvision weights {Path(args.state_dict).name}",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, meta)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{out}: {args.model} ({params:,} parameters, {count} classes, "
        f"{model.in_chans}x{side}x{side} inputs normalised with ImageNet's mean and std) "
        f"from {args.state_dict}"
    )
    return 0
