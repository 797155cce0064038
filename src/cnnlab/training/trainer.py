"""The training loop, written out in full, and the run directory it fills.

A run directory holds config.json (the resolved settings), metrics.csv (one row
per epoch), checkpoints/{last,best}.safetensors plus last.state.safetensors (weights,
optimiser, schedule, every RNG, the position in the data and the epoch's running
metrics, for `--resume`), curves.png, confusion.png and report.md.

Crash safety: the training state is saved at the end of every epoch and, with
`checkpoint_every` / `checkpoint_minutes`, between them; it alone is what a run resumes
from, one file written atomically (cnnlab.atomic_file) and verified by its SHA-256, so a
kill at any moment leaves the last complete state, and resuming continues bit for bit.
One process at a time writes a run directory (training.run_lock). A NaN or infinite loss
stops the run at its step (NumericalError, exit code 3) with the last good checkpoint
kept, or, with `skip_nonfinite`, skips the batch and counts it.

Under torchrun (`training.distributed`) every process trains its share of each global
batch under DistributedDataParallel; the metrics are summed over the processes, and only
rank 0 prints and writes the run directory, which a resumed run can continue with any
number of processes.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cnnlab.atomic_file import remove_stale_temporaries, write_text_atomically
from cnnlab.checkpoint import CheckpointMeta, save_checkpoint
from cnnlab.data.augment import Augment
from cnnlab.data.class_subset import keep_classes
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import BatchLoader
from cnnlab.data.sources import DIGIT_SOURCES, load_dataset
from cnnlab.data.statistics import meanstd_preprocessing
from cnnlab.device import resolve_device
from cnnlab.errors import CheckpointError, CnnlabError, NumericalError
from cnnlab.models.classifier import Classifier
from cnnlab.precision import autocast, autocast_dtype, grad_scaler
from cnnlab.registry import create_model
from cnnlab.training import distributed
from cnnlab.training.checkpoint_schedule import CheckpointSchedule
from cnnlab.training.config import TrainConfig
from cnnlab.training.evaluate import evaluate
from cnnlab.training.losses import create_loss
from cnnlab.training.metrics import ClassificationMeter
from cnnlab.training.numerics import all_finite, finite_parameters
from cnnlab.training.optimizers import create_optimizer
from cnnlab.training.run_lock import RunLock
from cnnlab.training.run_report import (
    write_inspection_figures,
    write_run_figures,
    write_run_report,
)
from cnnlab.training.schedules import ScheduleFactor, create_schedule
from cnnlab.training.training_state import load_training_state, save_training_state
from cnnlab.training.transfer import (
    apply_freeze,
    keep_frozen_norms_in_eval,
    load_pretrained_,
    parameter_groups,
    transfer_section,
)

log = logging.getLogger(__name__)

METRIC_FIELDS = (
    "epoch",
    "train_loss",
    "train_top1_error",
    "train_top5_error",
    "val_top1_error",
    "val_top5_error",
    "test_loss",
    "test_top1_error",
    "test_top5_error",
    "lr",
    "images_per_s",
    "epoch_time_s",
    "skipped_batches",
)
STATE_FILE = "last.state.safetensors"
OLD_STATE_FILE = "last.state.pt"  # a torch.save pickle (cnnlab before the checksums): refused


@dataclass
class EpochProgress:
    """How far the epoch in progress has come: what a mid-epoch checkpoint saves."""

    epoch: int  # 0-based
    meter: ClassificationMeter  # the running loss and errors of its batches so far
    batch: int = 0  # global batches done
    seen: int = 0  # examples trained on, all processes together
    time_s: float = 0.0  # training time in this epoch, earlier sessions included
    lr: float = 0.0  # the rate of the last step
    skipped: int = 0  # batches skipped for a non-finite loss

    def to_state(self) -> dict[str, Any]:
        m = self.meter
        return {
            "batch": self.batch,
            "seen": self.seen,
            "time_s": self.time_s,
            "lr": self.lr,
            "skipped": self.skipped,
            "meter": {
                "confusion": m.confusion,
                "loss_sum": m.loss_sum,
                "top5_wrong": m.top5_wrong,
                "count": m.count,
            },
        }


@dataclass
class RunResult:
    """What a finished run reports back."""

    run_dir: Path
    history: list[dict[str, Any]]
    wall_time_s: float
    test_meter: ClassificationMeter | None = field(default=None, repr=False)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


class Trainer:
    """Trains `cfg.model` on `cfg.data` into `run_dir`; `fit()` runs or resumes it."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        command: str = "",
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        """`on_epoch_end(epoch, row)` runs after each epoch is saved (1-based epoch, its
        metrics.csv row); what it raises stops the run there (a search's pruner)."""
        self.cfg = cfg
        self.on_epoch_end = on_epoch_end
        self.run_dir = Path(run_dir)
        self.commands = [command] if command else []
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.world = distributed.current_world()
        if self.world.distributed and (cfg.checkpoint_every or cfg.checkpoint_minutes):
            raise CnnlabError(
                "--checkpoint-every/--checkpoint-minutes: under torchrun the training state is "
                "saved at the end of each epoch only (the other processes' mid-epoch state is "
                "not saved); expected neither"
            )
        self.device = distributed.rank_device(self.world, resolve_device(cfg.device))
        self._owns_group = distributed.init_process_group(self.world, self.device)
        torch.manual_seed(cfg.seed)  # one seed: initialisation, dropout, data order
        self.train_set, self.val_set, self.test_set = self._datasets()
        self.classes = list(self.train_set.classes)
        c, h, w = self.train_set.image_shape
        self._normalise_by_the_data(c)
        self.model: Classifier = create_model(
            cfg.model, num_classes=len(self.classes), in_chans=c, **cfg.model_args
        ).to(self.device)
        self.model.validate_input((c, *cfg.preprocessing.input_size(h, w)))
        # transfer: freeze now; fit() loads init_from's weights unless restore() loaded the run's
        self.freeze = apply_freeze(self.model, cfg.freeze)
        self._pretrained_pending = cfg.init_from is not None
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.forward_with_aux = (  # DDP: backward averages the gradients of the processes
            distributed.data_parallel(self.model, self.device)
            if self.world.distributed
            else self.model.forward_with_aux
        )
        if cfg.compile:
            self.forward_with_aux = torch.compile(self.forward_with_aux)
        self.autocast_dtype = autocast_dtype(cfg.precision, self.device)
        self.scaler = grad_scaler(self.device, cfg.precision)  # fp16 only; else a pass-through
        self.augment = (  # training batches only, seeded by (seed, epoch, step)
            Augment.for_dataset(cfg.augment, self.train_set, cfg.preprocessing)
            if cfg.augment
            else None
        )
        # an augmented global batch is loaded whole, distorted as in one process, then shared
        self.train_loader = self._loader(
            self.train_set, cfg.batch_size, shuffle=True, share=self.augment is None
        )
        self._check_shares()
        self.optimizer = create_optimizer(
            cfg.optimizer,
            parameter_groups(self.model, cfg.lr, cfg.backbone_lr_mult),
            cfg.lr,
            cfg.momentum,
            cfg.nesterov,
            cfg.weight_decay,
        )
        factor = ScheduleFactor(
            cfg.schedule,
            cfg.epochs,
            len(self.train_loader),
            cfg.gamma,
            cfg.step_size,
            tuple(cfg.milestones),
        )
        self.scheduler = create_schedule(self.optimizer, factor)
        self.loss_fn = create_loss(cfg.loss, cfg.label_smoothing)
        self.history: list[dict[str, Any]] = []
        self.best_error = math.inf
        self.start_epoch = 0
        self.elapsed_s = 0.0
        self.checkpoints = CheckpointSchedule(cfg.checkpoint_every, cfg.checkpoint_minutes)
        self.lock = RunLock(self.run_dir)  # taken by the writing process in fit()
        self.resume_progress: dict[str, Any] | None = None  # a mid-epoch checkpoint's
        self.saved_step: int | None = None  # the global step of the last saved state

    def _normalise_by_the_data(self, channels: int) -> None:
        """Per-channel mean/std of the training split, when asked or when the recipe's
        statistics are for another number of channels (a CIFAR recipe on MNIST); stored in
        config.json and every checkpoint like any preprocessing."""
        pre = self.cfg.preprocessing
        misfit = pre.mode == "meanstd" and len(pre.mean) not in (1, channels)
        if not (self.cfg.dataset_stats or misfit):
            return
        stats = meanstd_preprocessing(self.train_set, pad_to=pre.pad_to)
        if misfit and not self.cfg.dataset_stats:
            log.info(
                "the recipe normalises %d channels, the data have %d: using the training "
                "split's mean %s and std %s",
                len(pre.mean), channels,
                tuple(round(m, 4) for m in stats.mean), tuple(round(v, 4) for v in stats.std),
            )  # fmt: skip
        self.cfg.preprocessing = stats

    def _datasets(self) -> tuple[ImageDataset, ImageDataset | None, ImageDataset]:
        cfg = self.cfg
        train, test = load_dataset(cfg.data, cfg.data_dir)
        if cfg.classes:
            train, test = keep_classes(train, cfg.classes), keep_classes(test, cfg.classes)
        if cfg.limit_train is not None:
            train = train.subset(slice(0, cfg.limit_train))
        if cfg.limit_test is not None:
            test = test.subset(slice(0, cfg.limit_test))
        val = None
        if cfg.val_split:
            train, val = train.split(cfg.val_split, cfg.seed)
        return train, val, test

    def _loader(
        self, dataset: ImageDataset, batch_size: int, shuffle: bool, share: bool = True
    ) -> BatchLoader:
        """Batches of `dataset`; this process's share of each, unless `share` is False."""
        world = self.world if share else distributed.World()
        return BatchLoader(
            dataset,
            batch_size,
            self.cfg.preprocessing,
            shuffle=shuffle,
            seed=self.cfg.seed,
            device=self.device,
            channels_last=self.cfg.channels_last,
            rank=world.rank,
            world_size=world.size,
        )

    def _check_shares(self) -> None:
        """Every process needs an example of every training batch (the last one too)."""
        n, batch, processes = len(self.train_set), self.cfg.batch_size, self.world.size
        last = n % batch or batch  # the last batch: at most n, at most batch
        if last < processes:
            raise CnnlabError(
                f"{n} training examples in batches of {batch} leave a batch of {last}, fewer "
                f"than the {processes} processes: expected another --batch-size or --limit-train"
            )

    # -- checkpoints -------------------------------------------------------------------

    def _meta(self, epoch: int, metrics: dict[str, Any]) -> CheckpointMeta:
        return CheckpointMeta(
            model=self.cfg.model,
            num_classes=len(self.classes),
            in_chans=self.model.in_chans,
            preprocessing=self.cfg.preprocessing,
            classes=self.classes,
            image_shape=self.train_set.image_shape,
            model_args=dict(self.cfg.model_args),
            dataset=self.cfg.data,
            data_source=self.train_set.source,
            digits=self.cfg.data in DIGIT_SOURCES,
            metrics=metrics,
            epoch=epoch,
        )

    def _save(self, epoch: int, metrics: dict[str, Any], is_best: bool) -> None:
        """The end of epoch `epoch` (1-based): best and last checkpoints, then the state.

        The state is written last: a kill before it resumes from the previous state and
        writes the same checkpoints again."""
        self._check_weights(f"at the end of epoch {epoch}")
        ckpt = self.run_dir / "checkpoints"
        meta = self._meta(epoch, metrics)
        if is_best:
            save_checkpoint(ckpt / "best.safetensors", self.model, meta)
        save_checkpoint(ckpt / "last.safetensors", self.model, meta)
        self._save_state(epoch, None)

    def _save_progress(self, epoch: int, progress: EpochProgress) -> None:
        """A mid-epoch checkpoint: the training state alone."""
        self._check_weights(f"after step {self.scheduler.last_epoch} (epoch {epoch + 1})")
        self._save_state(epoch, progress)

    def _save_state(self, epoch: int, progress: EpochProgress | None) -> None:
        """The training state after `epoch` epochs (and `progress` into the next)."""
        state = {
            "epoch": epoch,
            "step": self.scheduler.last_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "best_error": self.best_error,
            "elapsed_s": self.elapsed_s,
            "history": self.history,
            "commands": self.commands,
            "progress": progress.to_state() if progress is not None else None,
        }
        save_training_state(self.run_dir / "checkpoints" / STATE_FILE, state)
        self.saved_step = self.scheduler.last_epoch
        self.checkpoints.saved()

    def _check_weights(self, when: str) -> None:
        """Refuse to save NaN or infinite weights over the last good checkpoint."""
        if not finite_parameters(self.model.parameters()):
            raise NumericalError(
                f"the weights became NaN or infinite {when}: not saved; "
                f"{self._last_good()}; try a lower --lr or --grad-clip"
            )

    def _last_good(self) -> str:
        if self.saved_step is None:
            return "no checkpoint had been saved"
        checkpoints = self.run_dir / "checkpoints"
        return f"the last good checkpoint (after step {self.saved_step}) is kept in {checkpoints}"

    def restore(self) -> bool:
        """Continue from the run directory's last training state, exactly where it stopped
        (at the end of an epoch or within one).

        Returns False, changing nothing, when the run stopped before its first checkpoint.
        """
        ckpt = self.run_dir / "checkpoints"
        if not (ckpt / STATE_FILE).is_file():
            if (ckpt / OLD_STATE_FILE).is_file():
                raise CheckpointError(
                    f"{ckpt / OLD_STATE_FILE}: the training state of an older cnnlab (a "
                    "pickle), not read: resume with that version, or train again"
                )
            return False
        state = load_training_state(ckpt / STATE_FILE)
        progress = state["progress"]
        if progress is not None and self.cfg.epochs <= state["epoch"]:
            raise CnnlabError(
                f"--epochs {self.cfg.epochs}: the run stopped within epoch {state['epoch'] + 1}; "
                f"expected at least {state['epoch'] + 1}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self._pretrained_pending = False
        except RuntimeError:
            raise CnnlabError(
                f"{ckpt / STATE_FILE}: its weights do not fit the run's config.json"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the saved rates follow the schedule as it was; with more --epochs it stretched
        step, lambdas = self.scheduler.last_epoch, self.scheduler.lr_lambdas
        for group, base, factor in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, lambdas
        ):
            group["lr"] = base * factor(step)
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.start_epoch = state["epoch"]
        self.best_error = state["best_error"]
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.elapsed_s = state["elapsed_s"]
        self.history = list(state["history"])
        self.commands = list(state["commands"]) + self.commands
        self.resume_progress = progress
        self.saved_step = state["step"]
        return True

    @property
    def resume_point(self) -> str:
        """Where a restored run continues: 'after epoch 2 of 5', or within an epoch."""
        epochs, progress = self.cfg.epochs, self.resume_progress
        if progress is None:
            return f"after epoch {self.start_epoch} of {epochs}"
        return (
            f"in epoch {self.start_epoch + 1} of {epochs}, after batch {progress['batch']} of "
            f"{len(self.train_loader)} (step {self.saved_step})"
        )

    def _epoch_progress(self, epoch: int) -> EpochProgress:
        """A new epoch's progress, or the restored one of a mid-epoch checkpoint (whose
        running metrics, under torchrun, the first process alone carries on)."""
        meter = ClassificationMeter(len(self.classes), device=self.device)
        saved, self.resume_progress = self.resume_progress, None
        if saved is None or epoch != self.start_epoch:
            return EpochProgress(epoch, meter)
        if self.world.is_main:
            for name in ("confusion", "loss_sum", "top5_wrong"):
                getattr(meter, name).copy_(saved["meter"][name])
            meter.count = saved["meter"]["count"]
        return EpochProgress(
            epoch,
            meter,
            batch=saved["batch"],
            seen=saved["seen"],
            time_s=saved["time_s"],
            lr=saved["lr"],
            skipped=saved["skipped"],
        )

    # -- the loop ----------------------------------------------------------------------

    def _train_epoch(self, epoch: int) -> EpochProgress:
        """One pass over the training set (the rest of it, for a run restored within the
        epoch), saving the training state whenever `checkpoints` says so."""
        self.model.train()
        keep_frozen_norms_in_eval(self.model)  # frozen statistics stay as loaded
        loader = self.train_loader
        loader.set_epoch(epoch)
        world = self.world
        if world.distributed:  # dropout: its own stream in each process, resumable with any N
            torch.manual_seed(distributed.rank_seed(self.cfg.seed, epoch, world.rank))
        p = self._epoch_progress(epoch)
        start, time_before = time.perf_counter(), p.time_s
        bar = tqdm(
            loader.batches(p.batch),
            total=len(loader),
            initial=p.batch,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            unit="batch",
            leave=False,
            disable=self.cfg.quiet or not world.is_main,
            dynamic_ncols=True,
        )
        for step, (x, y) in enumerate(bar, start=p.batch):
            if self.augment is not None:
                x = self.augment(x, seed=self.cfg.seed, epoch=epoch, step=step)
                if world.distributed:  # the global batch was loaded whole: keep the share
                    share = world.share(y.shape[0])
                    x, y = x[share], y[share]
            batch = loader.global_batch_length(step)
            with autocast(self.device, self.autocast_dtype):
                logits, aux_logits = self.forward_with_aux(x)
                loss = self.loss_fn(logits, y)
                aux_loss = sum(self.model.aux_weight * self.loss_fn(a, y) for a in aux_logits)
            objective = loss + aux_loss
            if world.distributed:  # DDP's mean over processes is then the global batch's mean
                objective = objective * world.share_weight(batch)
            lr = self.optimizer.param_groups[0]["lr"]
            if all_finite(objective, world):
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(objective).backward()
                if self.cfg.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradient
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.scaler.step(self.optimizer)  # skipped when fp16 overflowed
                self.scaler.update()
                p.meter.update(logits, y, loss)  # running loss and error, in training mode
                p.seen += batch
            else:
                self._stop_unless_skipping(objective, epoch, step)
                p.skipped += 1
            self.scheduler.step()  # the schedule follows the data, skipped batches too
            p.batch, p.lr = step + 1, lr
            p.time_s = time_before + time.perf_counter() - start
            if not bar.disable and step % 20 == 0:
                rate = p.seen / max(p.time_s, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:,.0f}")
            last = p.batch == len(loader)  # the end of the epoch saves anyway
            if not last and world.is_main and self.checkpoints.due(self.scheduler.last_epoch):
                self._save_progress(epoch, p)
        if world.distributed:  # the figures of the global batches, in every process
            p.meter.all_reduce_()
            distributed.average_running_statistics_(self.model, world)
        return p

    def _stop_unless_skipping(self, objective: torch.Tensor, epoch: int, step: int) -> None:
        """A non-finite loss: raise NumericalError, or return to skip the batch."""
        if self.cfg.skip_nonfinite:
            return
        value = objective.detach().float().sum().item()
        found = "non-finite in another process" if math.isfinite(value) else f"{value}"
        raise NumericalError(
            f"the training loss became {found} at step {self.scheduler.last_epoch + 1} (epoch "
            f"{epoch + 1}, batch {step + 1} of {len(self.train_loader)}): stopped; "
            f"{self._last_good()}; try a lower --lr (it is {self.cfg.lr:g}) or --grad-clip, "
            "or resume with --skip-nonfinite to skip such batches"
        )

    def fit(self) -> RunResult:
        """Train the remaining epochs; under torchrun, leave the process group at the end."""
        try:
            return self._fit()
        finally:
            self.lock.release()
            if self._owns_group:
                distributed.destroy_process_group()
                self._owns_group = False

    def _fit(self) -> RunResult:
        cfg = self.cfg
        main = self.world.is_main  # the one process that prints and writes files
        if self._pretrained_pending:  # a new run from a checkpoint (not a resumed one)
            load_pretrained_(self.model, cfg.init_from)
            self._pretrained_pending = False
        if main:
            self._open_run_dir()
        test_loader = self._loader(self.test_set, cfg.eval_batch_size, shuffle=False)
        val_loader = self.val_set and self._loader(self.val_set, cfg.eval_batch_size, False)
        test_meter = None
        for epoch in range(self.start_epoch, cfg.epochs):
            progress = self._train_epoch(epoch)
            train_meter, t0 = progress.meter, time.perf_counter()
            val = val_loader and evaluate(self.model, val_loader, len(self.classes))
            test_meter = evaluate(self.model, test_loader, len(self.classes), self.loss_fn)
            epoch_time = progress.time_s + time.perf_counter() - t0
            self.elapsed_s += epoch_time
            row = {
                "epoch": epoch + 1,
                "train_loss": train_meter.loss,
                "train_top1_error": train_meter.top1_error,
                "train_top5_error": train_meter.top5_error,
                "val_top1_error": val.top1_error if val else None,
                "val_top5_error": val.top5_error if val else None,
                "test_loss": test_meter.loss,
                "test_top1_error": test_meter.top1_error,
                "test_top5_error": test_meter.top5_error,
                "lr": progress.lr,
                "images_per_s": progress.seen / max(progress.time_s, 1e-9),
                "epoch_time_s": epoch_time,
                "skipped_batches": progress.skipped,
            }
            self.history.append(row)
            selection = row["val_top1_error"] if val else row["test_top1_error"]
            is_best = selection < self.best_error
            self.best_error = min(self.best_error, selection)
            if main:
                self._write_metrics()
                self._save(epoch + 1, row, is_best)
                self._print_epoch(row)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch + 1, row)
        if test_meter is None:  # resumed a run that had already finished
            test_meter = evaluate(self.model, test_loader, len(self.classes), self.loss_fn)
        result = RunResult(self.run_dir, self.history, self.elapsed_s, test_meter)
        if not main:
            return result
        write_run_figures(self.run_dir, self.history, test_meter, self.classes)
        examples = cfg.preprocessing(self.test_set.images[:4].to(self.device))
        inside = write_inspection_figures(
            self.run_dir, self.model.eval(), examples, cfg.preprocessing, self.classes
        )
        transfer = cfg.init_from or cfg.freeze != "none" or cfg.backbone_lr_mult != 1.0
        sections = (
            transfer_section(cfg.init_from, self.freeze, cfg.lr, cfg.backbone_lr_mult)
            if transfer
            else []
        ) + self._processes_section()
        write_run_report(
            self.run_dir, cfg, result, self.commands, self.model, inside, sections,
            data_source=self.train_set.source,
        )  # fmt: skip
        return result

    def _processes_section(self) -> list[str]:
        """The report's account of a multi-process run (none for a single process)."""
        world = self.world
        if not world.distributed:
            return []
        share = world.share(self.cfg.batch_size)
        cuda = self.device.type == "cuda"
        norm = (
            "by the global batch (SyncBatchNorm)"
            if cuda
            else "by each process's share (PyTorch has no SyncBatchNorm on the CPU)"
        )
        return [
            "## Processes",
            f"- Trained (in its last session) in {world.size} processes, DistributedDataParallel "
            f"over {'NCCL' if cuda else 'gloo'}: each took about {share.stop - share.start} "
            f"examples of every global batch of {self.cfg.batch_size}; batch norm, if any, "
            f"normalises {norm}",
            "",
        ]

    def _open_run_dir(self) -> None:
        """Lock the run directory, clear what killed writes left there, write config.json."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                stale = remove_stale_temporaries(folder) if folder.is_dir() else []
                if stale:
                    log.info("removed %d unfinished writes of a killed run", len(stale))
            write_text_atomically(self.run_dir / "config.json", self.cfg.to_json())
        except OSError as e:
            raise CnnlabError(f"{self.run_dir}: cannot write the run ({e.strerror or e})") from None

    def _write_metrics(self) -> None:
        path = self.run_dir / "metrics.csv"
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(self.history)
        try:
            write_text_atomically(path, text.getvalue())
        except OSError as e:
            raise CnnlabError(f"{path}: not written ({e.strerror or e})") from None

    def _print_epoch(self, row: dict[str, Any]) -> None:
        val = f"  val err {row['val_top1_error']:.2%}" if row["val_top1_error"] is not None else ""
        skipped = row.get("skipped_batches")
        skipped = f"  skipped {skipped} non-finite batches" if skipped else ""
        print(
            f"epoch {row['epoch']:>3}/{self.cfg.epochs}  loss {row['train_loss']:.4f}  "
            f"train err {row['train_top1_error']:.2%}{val}  test err {row['test_top1_error']:.2%} "
            f"(top-5 {row['test_top5_error']:.2%})  lr {row['lr']:.3g}  "
            f"{row['images_per_s']:,.0f} img/s  {row['epoch_time_s']:.1f} s{skipped}",
            flush=True,
        )
