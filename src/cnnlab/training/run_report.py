"""The human-readable end of a run: curves.png, confusion.png, a look inside the trained
model (filters.png, feature_maps.png, explanations.png) and report.md."""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.atomic_file import write_text_atomically
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.data.sources import describe_source
from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig
from cnnlab.training.metrics import ClassificationMeter
from cnnlab.viz.confusion import plot_confusion
from cnnlab.viz.curves import plot_curves
from cnnlab.viz.explain import explanation_figure
from cnnlab.viz.feature_maps import feature_maps, plot_feature_maps
from cnnlab.viz.filters import plot_filters
from cnnlab.viz.save import save_figure

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from cnnlab.training.trainer import RunResult


def write_run_figures(
    run_dir: Path, history: list[dict[str, Any]], test: ClassificationMeter, classes: list[str]
) -> None:
    plot_curves(history).savefig(run_dir / "curves.png", dpi=110)
    title = f"test set, top-1 error {test.top1_error:.2%}"
    plot_confusion(test.confusion, classes, title).savefig(run_dir / "confusion.png", dpi=110)


def write_inspection_figures(
    run_dir: Path,
    model: torch.nn.Module,
    examples: torch.Tensor,
    preprocessing: Preprocessing,
    classes: list[str],
) -> list[tuple[str, str]]:
    """filters.png, feature_maps.png (first example) and explanations.png (saliency and
    Grad-CAM of each example); returns (caption, file) for the report. A figure a model
    cannot give is skipped with a warning: the run itself is already saved."""
    figures = {
        "first-layer filters": ("filters.png", lambda: plot_filters(model)),
        "feature maps of a test image": (
            "feature_maps.png",
            lambda: plot_feature_maps(feature_maps(model, examples[:1])),
        ),
        "saliency and Grad-CAM of test images": (
            "explanations.png",
            lambda: explanation_figure(model, examples, preprocessing, classes),
        ),
    }
    written = []
    for caption, (name, draw) in figures.items():
        try:
            save_figure(draw(), run_dir / name)
        except CnnlabError as e:
            log.warning("report: no %s (%s)", caption, e)
            continue
        written.append((caption, name))
    return written


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _epoch_row(r: dict[str, Any]) -> str:
    cells = [
        str(r["epoch"]),
        f"{r['train_loss']:.4f}",
        _pct(r["train_top1_error"]),
        _pct(r["val_top1_error"]),
        _pct(r["test_top1_error"]),
        _pct(r["test_top5_error"]),
        f"{r['lr']:.3g}",
        f"{r['images_per_s']:,.0f}",
        f"{r['epoch_time_s']:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def write_run_report(
    run_dir: Path,
    cfg: TrainConfig,
    result: RunResult,
    commands: list[str],
    model: torch.nn.Module,
    inside: Sequence[tuple[str, str]] = (),
    sections: Sequence[str] = (),
    data_source: str = "",
) -> None:
    """report.md: the model, the data, the final metrics, the wall time, the commands;
    `sections`: more Markdown lines (a fine-tuning run's transfer section); `data_source`:
    the files the data came from (ImageDataset.source), when they say more than `cfg.data`."""
    final = result.final
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    device = next(model.parameters()).device
    model_args = f" with {cfg.model_args}" if cfg.model_args else ""
    limit = f"first {cfg.limit_train:,} " if cfg.limit_train else ""
    wall = result.wall_time_s
    lines = [
        f"# Run report: {cfg.model} on {cfg.data}",
        "",
        "Commands that made this run:",
        "",
        *[f"- `{c}`" for c in commands or ["(a library call)"]],
        "",
        "## Result",
        f"- Test top-1 error: **{_pct(final.get('test_top1_error'))}** "
        f"(top-5: {_pct(final.get('test_top5_error'))}) after {final.get('epoch', 0)} epochs",
        *(
            [f"- Per-class test error, worst first: {result.test_meter.worst_classes()}"]
            if result.test_meter is not None
            else []
        ),
        f"- Training wall time: {wall:.1f} s ({wall / 60:.1f} min) on {device}, "
        f"{torch.get_num_threads()} CPU threads",
        f"- Machine: {platform.machine()} {platform.system()}, PyTorch {torch.__version__}",
        "",
        "## Model and data",
        f"- Model: `{cfg.model}`{model_args}, {params:,} trainable parameters",
        f"- Data: {cfg.data}"
        f"{f', read from {describe_source(data_source)}' if data_source else ''}, "
        f"{limit}training examples, validation split {cfg.val_split}",
        f"- Augmentation of training batches: {' '.join(cfg.augment) or 'none'}",
        f"- Preprocessing: {cfg.preprocessing.mode}, padded to {cfg.preprocessing.pad_to or '-'}",
        f"- Optimiser: {cfg.optimizer}, lr {cfg.lr}, momentum {cfg.momentum}, "
        f"weight decay {cfg.weight_decay}; schedule {cfg.schedule}; batch {cfg.batch_size}; "
        f"loss {cfg.loss}"
        f"{f' with label smoothing {cfg.label_smoothing}' if cfg.label_smoothing else ''}; "
        f"seed {cfg.seed}",
        f"- Arithmetic: {cfg.precision}"
        f"{', channels_last' if cfg.channels_last else ''}"
        f"{', torch.compile' if cfg.compile else ''}",
        *([f"- Recipe note: {cfg.recipe_note}"] if cfg.recipe_note else []),
        "",
        "## Per epoch",
        "Training error is measured on the fly during each epoch, in training mode.",
        "",
        "| epoch | train loss | train err | val err | test err | test top-5 | last lr | img/s "
        "| time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        *map(_epoch_row, result.history),
        "",
        "![curves](curves.png)",
        "",
        "![confusion matrix](confusion.png)",
        "",
        *(
            [
                "## Inside the trained model",
                "",
                *[f"![{caption}]({name})\n" for caption, name in inside],
            ]
            if inside
            else []
        ),
        *sections,
        "Files: `config.json`, `metrics.csv`, `checkpoints/best.safetensors` (best by "
        f"{'validation' if cfg.val_split else 'test'} error), `checkpoints/last.safetensors`, "
        "`checkpoints/last.state.safetensors`.",
    ]
    write_text_atomically(run_dir / "report.md", "\n".join(lines) + "\n")
