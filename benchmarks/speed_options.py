"""Benchmark: what --precision, --channels-last and --compile buy on this machine.

Runs `cnnlab bench` (one fresh process per row, the same thread count) for LeNet-5 and
its modern variant on MNIST-shaped input and ResNet-20 on CIFAR-shaped input, each in
fp32, fp32 channels_last, bf16, bf16 channels_last and fp32 torch.compile, and records
training and inference images/s, batch-1 latency and the training FLOP rate as a
fraction of the machine's measured convolution peak. The answer decides the defaults:
an option is on by default only where it wins. Writes
benchmarks/results/speed_options.{json,md}.

    python benchmarks/speed_options.py [--threads 2] [--models lenet5 resnet20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mnist_lenet import machine

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {"lenet5": "mnist", "lenet5_modern": "mnist", "resnet20": "cifar10"}
SETTINGS = {
    "fp32": [],
    "fp32 channels_last": ["--channels-last"],
    "bf16": ["--precision", "bf16"],
    "bf16 channels_last": ["--precision", "bf16", "--channels-last"],
    "fp32 compile": ["--compile"],
}


def bench(model: str, data: str, flags: list[str], threads: int) -> dict:
    argv = [sys.executable, "-m", "cnnlab", "bench", model, "--data", data]
    argv += ["--threads", str(threads), "--format", "json", *flags]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    args = parser.parse_args()
    rows = []
    for model in args.models:
        for setting, flags in SETTINGS.items():
            print(f"{model} {setting} ...", flush=True)
            out = bench(model, MODELS[model], flags, args.threads)
            rows.append({"model": model, "data": MODELS[model], "setting": setting, **out})
    info = {**machine(), "threads": args.threads, "measured": time.strftime("%Y-%m-%d %H:%M")}
    (RESULTS / "speed_options.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    peak = rows[0]
    lines = [
        "# What --precision, --channels-last and --compile buy",
        "",
        f"Command: `python benchmarks/speed_options.py --threads {args.threads}` "
        f"({info['measured']}); each row one `cnnlab bench` process. Machine: {peak['machine']}, "
        f"PyTorch {info['torch']}. Measured peaks (FP32, {args.threads} threads): matrix "
        f"multiply {peak['matmul_peak_gflops']:.0f} GFLOPS, convolution forward + backward "
        f"{peak['conv_peak_gflops']:.0f} GFLOPS. Batch: each model's recipe (training), "
        "1,024 (inference), 1 (latency).",
        "",
        "| model | setting | train img/s | vs fp32 | infer img/s | latency median (ms) "
        "| train GFLOPS | of conv peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["setting"] == "fp32")
        lines.append(
            f"| {row['model']} | {row['setting']} | {row['train_images_per_s']:,} "
            f"| {row['train_images_per_s'] / base['train_images_per_s']:.2f}x "
            f"| {row['infer_images_per_s']:,} | {row['latency_ms_median']:.3f} "
            f"| {row['train_gflops']:.1f} | {row['train_fraction_of_conv_peak']:.0%} |"
        )
    lines += [
        "",
        "Training FLOP = 3 x 2 x the multiply-adds of `cnnlab summary` per image (forward plus "
        "a backward of twice its cost); LeNet-5's C3 counts its connection table's kernels. "
        "Times vary 15-25% between runs on this shared machine: compare rows of one run.",
        "",
    ]
    (RESULTS / "speed_options.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
