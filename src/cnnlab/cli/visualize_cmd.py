"""`cnnlab visualize CHECKPOINT`: what a trained network has learned.

--filters: the first convolution's kernels (filters.png, filters.npy: the raw
weights) and a weight histogram per layer (weight_histograms.png).
--feature-maps IMAGE: every named stage's activations for one image
(feature_maps.png, and feature_maps-STAGE.npy for each stage).
--class-models: the input each class scores highest for, by gradient ascent
from the zero image (Simonyan et al. 2013, Section 2) (class_models.png,
class_models.npy: (K, C, H, W) pixels in [0, 1]).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli.image_inputs import load_batch
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.viz.class_model import class_models, plot_class_models
from cnnlab.viz.feature_maps import feature_maps, plot_feature_maps
from cnnlab.viz.filters import first_conv, plot_filters, plot_weight_histograms
from cnnlab.viz.overlay import to_display
from cnnlab.viz.save import save_array, save_figure

EXAMPLE = "example: cnnlab visualize runs/quick --filters --class-models --out pictures/"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "visualize",
        help="filters, feature maps and class models of a trained model",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--filters", action="store_true", help="first-layer kernels, histograms")
    p.add_argument("--feature-maps", metavar="IMAGE", help="stage activations for this image")
    p.add_argument("--class-models", action="store_true", help="one image per class")
    p.add_argument("--out", required=True, help="folder for the PNG and .npy files")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.filters or args.feature_maps or args.class_models):
        raise CnnlabError(
            "nothing to draw: expected --filters, --feature-maps IMAGE and/or --class-models"
        )
    model, meta = load_checkpoint(args.checkpoint, resolve_device(args.device))
    out = Path(args.out)
    written: list[Path] = []
    if args.filters:
        name, weight = first_conv(model)
        written.append(
            save_figure(plot_filters(model, f"{meta.model}: {name}"), out / "filters.png")
        )
        written.append(save_array(weight, out / "filters.npy"))
        fig = plot_weight_histograms(model, meta.model)
        written.append(save_figure(fig, out / "weight_histograms.png"))
    if args.feature_maps:
        x = load_batch([args.feature_maps], meta, next(model.parameters()).device)
        maps = feature_maps(model, x)
        title = f"{meta.model} on {Path(args.feature_maps).name}"
        written.append(save_figure(plot_feature_maps(maps, title=title), out / "feature_maps.png"))
        for stage, fmap in maps.items():
            written.append(save_array(fmap, out / f"feature_maps-{stage}.npy"))
    if args.class_models:
        pixels = to_display(class_models(model), meta.preprocessing, stretch=True)
        fig = plot_class_models(pixels, meta.classes, title=f"{meta.model}: class models")
        written.append(save_figure(fig, out / "class_models.png"))
        written.append(save_array(pixels, out / "class_models.npy"))
    for path in written:
        print(f"wrote {path}")
    return 0
