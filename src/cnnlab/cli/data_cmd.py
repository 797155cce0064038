"""`cnnlab data verify|download mnist`: check or fetch a dataset's files."""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.tables import render
from cnnlab.data.mnist import load_mnist, resolve_data_dir, verify_mnist

EXAMPLE = "example: cnnlab data verify mnist --data-dir ../shared/datasets"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="verify or download a dataset", description=__doc__, epilog=EXAMPLE
    )
    p.add_argument("action", choices=("verify", "download"))
    p.add_argument("dataset", choices=("mnist",))
    p.add_argument("--data-dir", help="data folder (default $CNNLAB_DATA, else ~/.cache/cnnlab)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = resolve_data_dir(args.data_dir) / "mnist"
    if args.action == "download":
        train, test = load_mnist(args.data_dir, download=True)
        print(f"MNIST ready in {folder}: {len(train):,} training and {len(test):,} test images")
        return 0
    report = verify_mnist(args.data_dir)
    ok = all(r["ok"] for r in report)
    if args.format == "json":
        print(
            json.dumps(
                {"dataset": "mnist", "folder": str(folder), "ok": ok, "files": report}, indent=2
            )
        )
    else:
        rows = [
            {
                "file": r["file"],
                "ok": "ok" if r["ok"] else "FAILED",
                "shape": r.get("shape") or "-",
                "detail": r.get("error") or ("md5 " + (r.get("md5") or "-")),
            }
            for r in report
        ]
        print(render(rows, "table"))
        print(f"mnist in {folder}: {'all files verified' if ok else 'verification FAILED'}")
    return 0 if ok else 2
