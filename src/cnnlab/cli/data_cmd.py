"""`cnnlab data verify|download mnist|cifar10`: check or fetch a dataset's files.

verify checks MNIST's four IDX files against the canonical MD5s of their content, and
every CIFAR-10 source present: the python archive (its MD5, then every batch read), the
extracted batches, and the JPEG re-encoded zip (its SHA-256, and images per split).
download fetches what is missing and checks it the same way.
"""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.tables import render
from cnnlab.data.cifar10 import load_cifar10, verify_cifar10
from cnnlab.data.mnist import load_mnist, resolve_data_dir, verify_mnist

EXAMPLE = """examples:
  cnnlab data verify mnist --data-dir ../shared/datasets
  cnnlab data verify cifar10 --format json
  cnnlab data download cifar10 --data-dir ~/data"""

LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="verify or download a dataset",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("verify", "download"))
    p.add_argument("dataset", choices=tuple(LOADERS))
    p.add_argument("--data-dir", help="data folder (default $CNNLAB_DATA, else ~/.cache/cnnlab)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def _rows(dataset: str, report: list[dict]) -> list[dict[str, str]]:
    if dataset == "mnist":
        return [
            {
                "file": r["file"],
                "ok": "ok" if r["ok"] else "FAILED",
                "shape": r.get("shape") or "-",
                "detail": r.get("error") or ("md5 " + (r.get("md5") or "-")),
            }
            for r in report
        ]
    return [
        {"file": r["file"], "ok": "ok" if r["ok"] else "FAILED", "detail": r["detail"]}
        for r in report
    ]


def run(args: argparse.Namespace) -> int:
    root = resolve_data_dir(args.data_dir)
    if args.action == "download":
        train, test = LOADERS[args.dataset](args.data_dir, download=True)
        print(
            f"{args.dataset} ready in {root} ({train.source}): {len(train):,} training and "
            f"{len(test):,} test images"
        )
        return 0
    if args.dataset == "mnist":
        report = verify_mnist(args.data_dir)
        ok = all(r["ok"] for r in report)
    else:
        report = verify_cifar10(args.data_dir)
        ok = report[0]["ok"]  # the source load_cifar10 will read: the first one found
    folder = root / "mnist" if args.dataset == "mnist" else root
    if args.format == "json":
        payload = {"dataset": args.dataset, "folder": str(folder), "ok": ok, "files": report}
        print(json.dumps(payload, indent=2))
    else:
        print(render(_rows(args.dataset, report), "table"))
        print(f"{args.dataset} in {folder}: {'verified' if ok else 'verification FAILED'}")
    return 0 if ok else 2
