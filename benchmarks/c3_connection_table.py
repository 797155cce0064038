"""Benchmark: two ways to compute LeNet-5's C3 (Table I), forward plus backward.

- dense:   cnnlab's ConnectionTableConv2d, one convolution over a 16x6 kernel with
           zeros where the table has no link (240,000 multiply-adds per image);
- grouped: one grouped convolution per fan-in group over gathered input maps
           (only the table's 150,000 multiply-adds per image).

    python benchmarks/c3_connection_table.py   # writes results/c3_connection_table.md
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.layers import LENET5_C3_TABLE, ConnectionTableConv2d

RESULTS = Path(__file__).resolve().parent / "results" / "c3_connection_table.md"


def grouped(layer: ConnectionTableConv2d, x: torch.Tensor) -> torch.Tensor:
    """The same function as `layer`, computed only over the table's links."""
    outs, order = [], []
    for n_in, weight in zip(layer.group_sizes, layer.weights):
        maps = [o for o, row in enumerate(layer.table) if len(row) == n_in]
        gather = torch.tensor([i for o in maps for i in layer.table[o]])
        outs.append(F.conv2d(x.index_select(1, gather), weight, groups=len(maps)))
        order += maps
    out = torch.cat(outs, 1).index_select(1, torch.argsort(torch.tensor(order)))
    return out + layer.bias.view(1, -1, 1, 1)


def time_ms(fn, x: torch.Tensor, repeats: int = 100) -> float:
    x = x.clone().requires_grad_()
    for _ in range(10):
        fn(x).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x).sum().backward()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    torch.manual_seed(0)
    layer = ConnectionTableConv2d(6, LENET5_C3_TABLE, 5)
    x = torch.randn(4, 6, 14, 14)
    torch.testing.assert_close(grouped(layer, x), layer(x), rtol=1e-4, atol=1e-4)
    lines = [
        "# LeNet-5 C3: dense-with-zeros against grouped, forward + backward",
        "",
        f"Command: `python benchmarks/c3_connection_table.py`; PyTorch {torch.__version__}, "
        f"{torch.get_num_threads()} threads.",
        "",
        "| batch | dense (ms) | grouped (ms) | grouped / dense |",
        "|---:|---:|---:|---:|",
    ]
    for batch in (16, 128):
        x = torch.randn(batch, 6, 14, 14)
        dense_ms, grouped_ms = time_ms(layer, x), time_ms(lambda t: grouped(layer, t), x)
        lines.append(
            f"| {batch} | {dense_ms:.2f} | {grouped_ms:.2f} | {grouped_ms / dense_ms:.1f}x |"
        )
        print(lines[-1], flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
