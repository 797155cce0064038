"""How fast a model trains and infers on synthetic input of a given shape.

- Training: the trainer's step (forward with any auxiliary heads, cross-entropy, backward,
  SGD with momentum) on one fixed random batch, timed over `steps` steps after warm-up; no
  data loading is timed.
- Inference: evaluation mode under `torch.inference_mode`, large batches.
- Latency: single-image forwards in evaluation mode; the median and the 95th percentile.
- Peak memory: on CUDA `torch.cuda.max_memory_allocated`; on the CPU the growth of the
  process's peak resident set (`getrusage` ru_maxrss) during the measurements: a coarse
  figure that includes the libraries' one-time allocations (oneDNN's kernels and buffers) and
  misses memory reused below an earlier high-water mark.
- FLOP: 2 per multiply-add of `analysis.paper.measure`; a training step counts 3 times the
  forward pass (the backward pass costs about twice the forward).

`--precision` runs forward and loss under `torch.autocast`; fp16 scales the loss
(`torch.amp.GradScaler`) as fp16 training must. On CUDA the clock is read after synchronising.
"""

from __future__ import annotations

import contextlib
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.analysis.paper import measure
from cnnlab.errors import CnnlabError
from cnnlab.models.classifier import Classifier
from cnnlab.precision import autocast, autocast_dtype, grad_scaler
from cnnlab.speed.peak import synchronize

TRAIN_FORWARD_MULTIPLE = 3  # forward + backward ~ 3 forwards
WARMUP_STEPS = 3
LATENCY_RUNS = 200
LATENCY_BUDGET_S = 2.0
LATENCY_MIN_RUNS = 20


@dataclass(frozen=True)
class BenchSettings:
    """What to measure, and how."""

    device: torch.device
    batch_size: int
    eval_batch_size: int = 1024
    steps: int = 20
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile the forward (compiled during the warm-up)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p95_ms: float
    runs: int


@dataclass(frozen=True)
class Measurements:
    """One model's figures; FLOP counts are per image."""

    train_images_per_s: float
    infer_images_per_s: float
    latency: Latency
    peak_memory_mb: float
    peak_memory_kind: str
    macs_per_image: int

    @property
    def train_flop_per_image(self) -> int:
        return 2 * TRAIN_FORWARD_MULTIPLE * self.macs_per_image

    @property
    def train_gflops(self) -> float:
        return self.train_flop_per_image * self.train_images_per_s / 1e9

    @property
    def infer_gflops(self) -> float:
        return 2 * self.macs_per_image * self.infer_images_per_s / 1e9


def _inputs(
    model: Classifier, shape: tuple[int, int, int], batch: int, settings: BenchSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, *shape, device=settings.device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(model.num_classes, (batch,), device=settings.device)
    return x, y


def _compiled(fn: Callable, settings: BenchSettings) -> Callable:
    """`fn` through torch.compile when the settings ask for it."""
    return torch.compile(fn) if settings.compile else fn


def _timed(fn: Callable[[], object], count: int, device: torch.device) -> float:
    """Seconds for `count` calls of `fn`."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        fn()
    synchronize(device)
    return time.perf_counter() - start


def training_throughput(
    model: Classifier, shape: tuple[int, int, int], settings: BenchSettings
) -> float:
    """Training images per second (the model is trained in place on random data)."""
    dtype = autocast_dtype(settings.precision, settings.device)
    x, y = _inputs(model, shape, settings.batch_size, settings)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = grad_scaler(settings.device, settings.precision)
    model.train()
    forward = _compiled(model.forward_with_aux, settings)

    def step() -> None:
        with autocast(settings.device, dtype):
            logits, aux_logits = forward(x)
            loss = F.cross_entropy(logits, y)
            loss = loss + sum(model.aux_weight * F.cross_entropy(a, y) for a in aux_logits)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(WARMUP_STEPS):
        step()
    return settings.steps * settings.batch_size / _timed(step, settings.steps, settings.device)


def inference_throughput(
    model: Classifier, shape: tuple[int, int, int], settings: BenchSettings
) -> float:
    """Images per second at `eval_batch_size`, over at least as many images as training saw
    (three batches at least)."""
    dtype = autocast_dtype(settings.precision, settings.device)
    batch = settings.eval_batch_size
    x, _ = _inputs(model, shape, batch, settings)
    batches = max(3, math.ceil(settings.steps * settings.batch_size / batch))
    model.eval()
    forward = _compiled(model, settings)
    with torch.inference_mode(), autocast(settings.device, dtype):
        forward(x)
        return batches * batch / _timed(lambda: forward(x), batches, settings.device)


def batch1_latency(
    model: Classifier, shape: tuple[int, int, int], settings: BenchSettings
) -> Latency:
    """Single-image forwards: LATENCY_RUNS of them, or as many as LATENCY_BUDGET_S allows
    (LATENCY_MIN_RUNS at least)."""
    dtype = autocast_dtype(settings.precision, settings.device)
    x, _ = _inputs(model, shape, 1, settings)
    model.eval()
    forward = _compiled(model, settings)
    times: list[float] = []
    with torch.inference_mode(), autocast(settings.device, dtype):
        for _ in range(WARMUP_STEPS):
            forward(x)
        budget_end = time.perf_counter() + LATENCY_BUDGET_S
        while len(times) < LATENCY_RUNS and (
            len(times) < LATENCY_MIN_RUNS or time.perf_counter() < budget_end
        ):
            times.append(_timed(lambda: forward(x), 1, settings.device))
    ordered = sorted(times)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
    return Latency(statistics.median(ordered) * 1e3, p95 * 1e3, len(ordered))


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float | str]]:
    """Yields a dict that holds, after the block, `mb` (the peak) and `kind` (how measured)."""
    found: dict[str, float | str] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        yield found
        found.update(mb=torch.cuda.max_memory_allocated(device) / 2**20)
        found.update(kind="cuda max_memory_allocated")
        return
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield found
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found.update(mb=(after - before) * unit / 2**20, kind="cpu peak RSS growth (ru_maxrss)")


def bench(model: Classifier, shape: tuple[int, int, int], settings: BenchSettings) -> Measurements:
    """Every measurement of `model` (moved to the settings' device and trained in place)."""
    for name in ("batch_size", "eval_batch_size", "steps"):
        if (value := getattr(settings, name)) < 1:
            raise CnnlabError(f"--{name.replace('_', '-')} {value}: expected a positive number")
    model.validate_input(shape)
    macs = int(measure(model, shape)["macs"])
    model.to(settings.device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    with peak_memory(settings.device) as memory:
        train = training_throughput(model, shape, settings)
        infer = inference_throughput(model, shape, settings)
        latency = batch1_latency(model, shape, settings)
    return Measurements(train, infer, latency, memory["mb"], memory["kind"], macs)
