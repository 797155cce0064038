"""This machine's peak compute rates, measured: the yardstick of `cnnlab bench`'s FLOP rates.

- FP32 matrix multiply: square products of 1024 and 2048 (2 n^3 FLOP each), best of a few.
- Convolution: one representative 3x3 convolution (batch 64, 64 -> 64 channels, 32x32, same
  padding) in channels_last, forward plus backward to its input and weight, counted as 3 times
  the forward's 2 N C_out H W C_in 9 FLOP; on the CPU PyTorch runs it with oneDNN.

Measuring takes seconds, so the result is cached per (machine, torch version, threads) in
peak.json under $CNNLAB_CACHE, else $XDG_CACHE_HOME/cnnlab or ~/.cache/cnnlab.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.atomic_file import write_text_atomically
from cnnlab.data.tensor_cache import CACHE_ENV

log = logging.getLogger(__name__)

MATMUL_SIZES = (1024, 2048)
CONV_SHAPE = (64, 64, 32)  # batch, channels (in = out), height = width
REPEATS = 3


@dataclass(frozen=True)
class MachinePeak:
    """Peak FP32 matrix-multiply and convolution (forward + backward) rates, in GFLOPS."""

    matmul_gflops: float
    conv_gflops: float
    threads: int
    machine: str


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], device: torch.device, repeats: int = REPEATS) -> float:
    """The fastest of `repeats` timed calls of `fn`, after one untimed warm-up call."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(device: torch.device, sizes: tuple[int, ...] = MATMUL_SIZES) -> float:
    """The best FP32 GFLOPS of square matrix products of the given sizes."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        seconds = best_seconds(lambda a=a, b=b: torch.mm(a, b), device)
        best = max(best, 2 * n**3 / seconds / 1e9)
    return best


def conv_gflops(device: torch.device, shape: tuple[int, int, int] = CONV_SHAPE) -> float:
    """FP32 GFLOPS of a 3x3 convolution's forward and backward passes in channels_last."""
    batch, channels, size = shape
    cl = torch.channels_last
    conv = nn.Conv2d(channels, channels, 3, padding=1).to(device, memory_format=cl)
    x = torch.randn(batch, channels, size, size, device=device).to(memory_format=cl)
    x.requires_grad_(True)
    grad_out = torch.randn_like(x)

    def step() -> None:
        out = conv(x)
        torch.autograd.grad(out, (x, conv.weight), grad_out)

    forward_flop = 2 * batch * channels * size * size * channels * 9
    return 3 * forward_flop / best_seconds(step, device) / 1e9


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the host, CPU model and core count: part of the cache key."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores"


def measure_peak(device: torch.device) -> MachinePeak:
    """Measure both peaks now, with PyTorch's current thread count."""
    return MachinePeak(
        matmul_gflops(device), conv_gflops(device), torch.get_num_threads(), machine_name(device)
    )


def cache_file() -> Path:
    """peak.json in $CNNLAB_CACHE, else in $XDG_CACHE_HOME/cnnlab or ~/.cache/cnnlab."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser() / "peak.json"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "cnnlab" / "peak.json"


def _read_cache(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable peak cache (%s); measuring again", path, e)
        return {}
    return entries if isinstance(entries, dict) else {}


def machine_peak(device: torch.device, remeasure: bool = False) -> tuple[MachinePeak, bool]:
    """(the peak, whether it came from the cache): measured once per (machine, torch version,
    threads) and cached; `remeasure` measures again and replaces the cached value."""
    key = f"{machine_name(device)} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    path = cache_file()
    entries = _read_cache(path)
    if not remeasure and key in entries:
        try:
            return MachinePeak(**entries[key]), True
        except TypeError:
            log.warning("%s: stale entry for %s; measuring again", path, key)
    log.info("measuring this machine's peak (matrix multiply, convolution); cached in %s", path)
    peak = measure_peak(device)
    entries[key] = asdict(peak)
    try:
        write_text_atomically(path, json.dumps(entries, indent=2) + "\n")
    except OSError as e:
        log.warning("cannot cache the peak in %s (%s)", path, e.strerror or e)
    return peak, False
