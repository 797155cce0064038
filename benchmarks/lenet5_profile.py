"""Benchmark: where a LeNet-5 training step spends its time on the CPU (torch.profiler).

The speed issue asks LeNet-5 to train at a third of this machine's convolution peak; it
reaches about a tenth (benchmarks/results/speed_options.md). This splits the self CPU time
of `--steps` training steps of `lenet5` (SGD, cross-entropy, channels_last as its recipe)
by kind of operator, and sets the convolutions' own FLOP rate (their share of the step's
FLOPs over their share of its time) beside the measured peak. Writes
benchmarks/results/lenet5_profile.{json,md}.

    python benchmarks/lenet5_profile.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cnnlab.analysis.paper import measure
from cnnlab.registry import create_model
from cnnlab.speed.peak import measure_peak

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = {  # operator name fragments -> kind; the first that matches wins
    "convolution": ("convolution",),
    "activation (tanh)": ("tanh",),
    "pooling": ("pool",),
    "fully connected": ("addmm", "aten::mm"),
    "optimiser and zeroing": ("Optimizer", "fill_", "add_", "mul_", "addcmul", "lerp"),
}


def kind_of(name: str) -> str:
    return next((k for k, parts in KINDS.items() if any(p in name for p in parts)), "other")


def profile_steps(batch: int, steps: int) -> tuple[dict[str, float], float]:
    """Self CPU seconds per kind over `steps` training steps, and the wall time."""
    model = create_model("lenet5").to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(20):  # warm-up: oneDNN builds its kernels
        step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = time.perf_counter() - start
    seconds: dict[str, float] = {}
    for event in prof.key_averages():
        kind = kind_of(event.key)
        seconds[kind] = seconds.get(kind, 0.0) + event.self_cpu_time_total / 1e6
    return seconds, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    seconds, wall = profile_steps(args.batch_size, args.steps)
    total = sum(seconds.values())
    costs = measure(create_model("lenet5"), (1, 32, 32))
    conv_macs = round(costs["macs"] * costs["macs_conv_share"])
    train_flop = 6 * costs["macs"]  # forward + a backward of twice its cost, 2 FLOP per MAC
    images = args.batch_size * args.steps
    conv_share = seconds.get("convolution", 0.0) / total
    conv_gflops = 6 * conv_macs * images / (conv_share * wall) / 1e9
    peak = measure_peak(torch.device("cpu")).conv_gflops  # measured now, in the same run
    result = {
        "command": shlex.join(["python", "benchmarks/lenet5_profile.py", *sys.argv[1:]]),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "wall_s": wall,
        "images_per_s": images / wall,
        "train_gflops": train_flop * images / wall / 1e9,
        "self_cpu_s": seconds,
        "conv_macs_per_image": conv_macs,
        "conv_gflops_in_their_time": conv_gflops,
        "conv_peak_gflops": peak,
        "load_average_1min_before": load,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lenet5_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Where a LeNet-5 training step spends its time",
        "",
        f"Command: `{result['command']}` ({result['date']}, PyTorch {result['torch']}); "
        f"lenet5, SGD, batch {args.batch_size}, channels_last, {args.threads} threads, "
        f"{args.steps} steps under torch.profiler (whose own overhead is in the wall time); "
        f"1-minute load average before: {load:.2f}.",
        "",
        "| kind of operator | self CPU time | share |",
        "|---|---:|---:|",
    ]
    for kind, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {kind} | {s * 1000:,.0f} ms | {s / total:.0%} |")
    lines += [
        "",
        f"{result['images_per_s']:,.0f} images/s, {result['train_gflops']:.1f} GFLOPS for the "
        f"whole step. The convolutions ({conv_macs:,} of the {costs['macs']:,} multiply-adds "
        f"per image) ran at {conv_gflops:.1f} GFLOPS in their own time, against a measured "
        f"convolution peak of {peak:.1f} GFLOPS measured in the same run "
        f"({conv_gflops / peak:.0%}).",
    ]
    (RESULTS / "lenet5_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
