"""`cnnlab explain CHECKPOINT IMAGE...`: what a trained model's prediction rests on.

For each image and method, writes IMAGE-METHOD.png (the map over the image) and
IMAGE-METHOD.npy (the raw map at input resolution, before colouring), and
IMAGE-explain.png with the input, the top-3 prediction and every map side by side.
Methods: saliency (Simonyan et al. 2013), gradcam and guided-gradcam (Selvaraju
et al. 2017; the layer defaults to the last convolutional stage, and is said),
occlusion (Zeiler and Fergus 2014: the drop of the class probability under a
grey square).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from cnnlab.checkpoint import CheckpointMeta, load_checkpoint
from cnnlab.cli.image_inputs import load_batch
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.viz.explain import METHODS, TITLES, explain, explanation_figure
from cnnlab.viz.overlay import heatmap_overlay, to_display
from cnnlab.viz.save import save_array, save_figure

EXAMPLE = "example: cnnlab explain runs/quick digit.png --method all --out explained/"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="saliency, Grad-CAM, occlusion maps of image files",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--method", choices=(*METHODS, "all"), default="all")
    p.add_argument("--target", help="class name or index to explain (default: the predicted)")
    p.add_argument("--layer", help="Grad-CAM's layer (default: the last convolutional stage)")
    p.add_argument("--out", required=True, help="folder for the PNG and .npy files")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def parse_target(text: str | None, meta: CheckpointMeta) -> int | None:
    """A class name ('7', 'cat') or index -> index; None stays None."""
    if text is None:
        return None
    if text in meta.classes:
        return meta.classes.index(text)
    if text.isascii() and text.isdigit() and int(text) < meta.num_classes:
        return int(text)
    raise CnnlabError(
        f"--target {text!r}: expected a class name or an index below {meta.num_classes} "
        f"(classes: {', '.join(meta.classes[:12])}{', ...' if meta.num_classes > 12 else ''})"
    )


def _overlay_figure(image: torch.Tensor, heatmap: torch.Tensor, title: str) -> Figure:
    fig = Figure(figsize=(3.2, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(heatmap_overlay(image, heatmap))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return fig


def run(args: argparse.Namespace) -> int:
    model, meta = load_checkpoint(args.checkpoint, resolve_device(args.device))
    target = parse_target(args.target, meta)
    x = load_batch(args.images, meta, next(model.parameters()).device)
    methods = list(METHODS) if args.method == "all" else [args.method]
    out = Path(args.out)
    written: list[Path] = []
    shown = to_display(x, meta.preprocessing)
    for method in methods:
        result = explain(model, x, method, target, args.layer)
        at = f" at {result.layer}" if result.layer else ""
        if result.layer:
            print(f"{TITLES[method]}: layer {result.layer}")
        for i, path in enumerate(args.images):
            stem = out / f"{Path(path).stem}-{method}"
            title = f"{TITLES[method]}{at}: class {meta.classes[int(result.target[i])]}"
            written.append(save_array(result.maps[i], stem.with_suffix(".npy")))
            written.append(
                save_figure(_overlay_figure(shown[i], result.maps[i], title), f"{stem}.png")
            )
    for i, path in enumerate(args.images):
        fig = explanation_figure(
            model, x[i : i + 1], meta.preprocessing, meta.classes, methods, target, args.layer
        )
        written.append(save_figure(fig, out / f"{Path(path).stem}-explain.png"))
    for path in written:
        print(f"wrote {path}")
    return 0
