"""Entry point of the `cnnlab` command and `python -m cnnlab`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cnnlab import __version__
from cnnlab.cli import (
    bench_cmd,
    data_cmd,
    eval_cmd,
    experiment_cmd,
    explain_cmd,
    export_cmd,
    finetune_cmd,
    import_weights_cmd,
    models_cmd,
    paper_cmd,
    predict_cmd,
    search_cmd,
    serve_cmd,
    summary_cmd,
    train_cmd,
    visualize_cmd,
)
from cnnlab.errors import CnnlabError

COMMANDS = (
    models_cmd,
    summary_cmd,
    paper_cmd,
    train_cmd,
    bench_cmd,
    finetune_cmd,
    import_weights_cmd,
    search_cmd,
    eval_cmd,
    predict_cmd,
    explain_cmd,
    visualize_cmd,
    export_cmd,
    serve_cmd,
    experiment_cmd,
    data_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="The classic convolutional networks: build, analyse, train, use.",
        epilog="example: cnnlab train lenet5_1998 --data mnist   (`cnnlab COMMAND --help`)",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user mistake prints one line and returns 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except CnnlabError as e:
        if _prints_errors():
            print(f"cnnlab: error: {e}", file=sys.stderr)
        return e.exit_code  # 2; 3 for a non-finite loss (NumericalError)
    except BrokenPipeError:  # the reader went away (`cnnlab models | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("cnnlab: interrupted; a training run resumes with --resume RUN_DIR", file=sys.stderr)
        return 130


def _prints_errors() -> bool:
    """Under torchrun every process meets the same mistake: rank 0 alone says it."""
    return os.environ.get("RANK", "0") in ("0", "")


if __name__ == "__main__":
    sys.exit(main())
