"""Benchmark: the latency of `cnnlab serve`'s POST /api/predict and POST /api/explain for LeNet-5.

The real `cnnlab serve CHECKPOINT --threads T` process (OMP_NUM_THREADS=T too) answers on
127.0.0.1; one keep-alive client (httpx2, TCP_NODELAY) sends real MNIST test digits as PNG
bodies, one request after the other, WARMUP of them first, then N timed ones per endpoint.
A latency is the client's wall time from sending the request to holding the parsed JSON
answer. GET /healthz, timed alike, is the floor: HTTP over loopback and no model.

The server's CPU time per request (utime + stime of its process, /proc/PID/stat) leaves
out the time spent waiting for a core, so it still means something on a busy machine; the
load average before and after says how busy the machine was.

    CNNLAB_DATA=../shared/datasets python benchmarks/serve_latency.py [--checkpoint PATH]
        [--requests 500] [--threads 1]

Without --checkpoint it first trains lenet5_1998 (the paper's LeNet-5) for one pass over
6,000 MNIST digits (about 10 s). Writes benchmarks/results/serve_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import numpy as np
import torch
from PIL import Image

from cnnlab.checkpoint import load_checkpoint, resolve_checkpoint_path
from cnnlab.data.mnist import load_mnist
from cnnlab.registry import get_spec
from cnnlab.speed.peak import machine_name
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "lenet5_1998"
TRAIN = dict(epochs=1, batch_size=32, limit_train=6_000, limit_test=1_000, seed=0)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def train_checkpoint(folder: Path, threads: int) -> Path:
    """lenet5_1998 after one pass over 6,000 digits: its best checkpoint."""
    cfg = TrainConfig.from_recipe(
        MODEL, get_spec(MODEL).recipe, quiet=True, threads=threads, **TRAIN
    )
    Trainer(cfg, folder / MODEL).fit()
    return folder / MODEL / "checkpoints" / "best.safetensors"


def start_server(checkpoint: Path, threads: int) -> tuple[subprocess.Popen, str]:
    """`cnnlab serve CHECKPOINT --port 0 --threads T`: the process and its URL."""
    argv = [sys.executable, "-m", "cnnlab", "serve", str(checkpoint), "--port", "0"]
    argv += ["--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"serving on (http://\S+) \(", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"cnnlab serve did not start: {line!r}")
    return proc, match.group(1)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14, 15


def digits_as_png(count: int) -> list[bytes]:
    """The first `count` MNIST test digits, each as the bytes of a PNG file."""
    _, test = load_mnist(download=False)
    bodies = []
    for pixels in test.images[:count, 0].numpy():
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        bodies.append(buffer.getvalue())
    return bodies


def measure(
    ask: Callable[[int], httpx2.Response], requests: int, warmup: int, pid: int
) -> dict[str, float]:
    """Latency statistics (ms) of `requests` sequential calls after `warmup` untimed ones."""
    for i in range(warmup):
        ask(i).raise_for_status()
    seconds = []
    cpu_before = cpu_seconds(pid)
    for i in range(requests):
        start = time.perf_counter()
        response = ask(i)
        response.json()
        seconds.append(time.perf_counter() - start)
        response.raise_for_status()
    cpu = cpu_seconds(pid) - cpu_before
    ms = np.array(seconds) * 1e3
    return {
        "requests": requests,
        "median_ms": round(float(np.median(ms)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "min_ms": round(float(ms.min()), 2),
        "max_ms": round(float(ms.max()), 2),
        "server_cpu_ms_per_request": round(cpu / requests * 1e3, 2),
    }


def write_results(info: dict, rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_latency.json").write_text(
        json.dumps({"info": info, "rows": rows}, indent=2) + "\n"
    )
    load = info["load_average_1min"]
    lines = [
        "# `cnnlab serve`: request latency for LeNet-5",
        "",
        f"Command: `{info['command']}` ({info['measured']}). Server: `{info['server']}` "
        f"(OMP_NUM_THREADS={info['threads']}) on 127.0.0.1; model {info['model']} "
        f"({info['checkpoint']}). Machine: {info['machine']}, PyTorch {info['torch']}, "
        f"Python {info['python']}; load average {load['before']:.1f} before, "
        f"{load['after']:.1f} after.",
        "",
        "One keep-alive client sends real MNIST test digits (PNG) one request after the other: "
        f"{info['warmup']} untimed, then the timed ones. Latency: the client's wall time from "
        "sending the request to holding the parsed JSON answer. /healthz (no model) is the "
        "floor that HTTP over loopback costs.",
        "",
        "| request | requests | median (ms) | 95th percentile (ms) | mean (ms) | min (ms) "
        "| max (ms) | server CPU per request (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['request']}` | {r['requests']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} "
            f"| {r['mean_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} "
            f"| {r['server_cpu_ms_per_request']:.2f} |"
        )
    lines += [
        "",
        "Server CPU per request: the server process's user plus system time over the timed "
        "requests, divided by their number; it leaves out time spent waiting for a core, "
        "which is what a load average above the core count adds to the latencies.",
        "",
    ]
    (RESULTS / "serve_latency.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a lenet5_1998 run directory or checkpoint")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first")
    parser.add_argument("--threads", type=int, default=1, help="the server's CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bodies = digits_as_png(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            checkpoint = resolve_checkpoint_path(args.checkpoint)
            described = str(args.checkpoint)
        else:
            checkpoint = train_checkpoint(Path(tmp), args.threads)
            described = "trained by the script: one pass over 6,000 MNIST digits, seed 0"
        _, meta = load_checkpoint(checkpoint)
        if meta.model != MODEL:
            raise SystemExit(f"{checkpoint}: a {meta.model} checkpoint, expected {MODEL}")
        error = meta.metrics.get("test_top1_error")
        if error is not None:
            described += f"; test error {error:.2%}"
        load_before = os.getloadavg()[0]
        proc, url = start_server(checkpoint, args.threads)
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        transport = httpx2.HTTPTransport(socket_options=nodelay)
        png = {"Content-Type": "image/png"}
        try:
            with httpx2.Client(base_url=url, transport=transport, timeout=60) as http:
                asks = {
                    "GET /healthz": lambda i: http.get("/healthz"),
                    "POST /api/predict": lambda i: http.post(
                        "/api/predict", content=bodies[i % len(bodies)], headers=png
                    ),
                    "POST /api/explain": lambda i: http.post(
                        "/api/explain", content=bodies[i % len(bodies)], headers=png
                    ),
                }
                rows = []
                for request, ask in asks.items():
                    print(f"{request} ...", flush=True)
                    stats = measure(ask, args.requests, args.warmup, proc.pid)
                    rows.append({"request": request, **stats})
        finally:
            proc.terminate()
            proc.wait(30)
    info = {
        "command": shlex.join(["python", "benchmarks/serve_latency.py", *sys.argv[1:]]),
        "server": f"cnnlab serve CHECKPOINT --port 0 --threads {args.threads}",
        "measured": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_name(torch.device("cpu")),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "model": MODEL,
        "checkpoint": described,
        "warmup": args.warmup,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
    write_results(info, rows)


if __name__ == "__main__":
    main()
