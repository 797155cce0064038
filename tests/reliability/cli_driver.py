"""Runs many `cnnlab` command lines quickly, each as its own process, and reports what each did.

usage: python cli_driver.py < SPEC.json > RESULTS.json

SPEC is {"watch": FOLDER, "cases": [{"id", "argv", "cwd", "env", "unreadable", "mirrors",
"stdout", "stderr"}]}. cnnlab (and torch) are imported once; every case then runs in a forked
child exactly as the `cnnlab` command does (`sys.exit(main(argv))`: an exception that escapes is
printed as a traceback, exit 1), with its own stdout and stderr files, environment and working
folder, and stdin empty. Run as root, the child gives up the capabilities that let root read any
file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a mode-000 file is as unreadable to it as to
any user; it first checks that each file in `unreadable` really cannot be opened. `mirrors`
replaces MNIST's download mirrors (this machine has no network). The SHA-256 of every file
under `watch` is taken before and after each case: what changed is reported.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

TIMEOUT_S = 120.0
_DAC_CAPABILITIES = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_root_file_access() -> None:
    """Clear CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: file modes then bind root too."""
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for part in ("effective", "permitted", "inheritable"):
        setattr(data[0], part, getattr(data[0], part) & ~_DAC_CAPABILITIES)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def tree_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by relative path."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            hashes[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """'added X', 'removed X', 'changed X' for each file that differs."""
    out = [f"removed {p}" for p in before if p not in after]
    out += [f"added {p}" for p in after if p not in before]
    out += [f"changed {p}" for p in before if p in after and before[p] != after[p]]
    return sorted(out)


def run_child(case: dict, cli: object) -> None:
    """In the forked child: set up as the case says, run the command, never return."""
    code = 1
    try:
        fd_in = os.open(os.devnull, os.O_RDONLY)
        fd_out = os.open(case["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fd_err = os.open(case["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for fd, target in ((fd_in, 0), (fd_out, 1), (fd_err, 2)):
            os.dup2(fd, target)
        os.environ.update(case.get("env", {}))
        os.chdir(case["cwd"])
        if os.geteuid() == 0:
            drop_root_file_access()
        for path in case.get("unreadable", []):
            try:
                open(path, "rb").close()
                print(f"cli_driver: {path} is still readable", file=sys.stderr)
                os._exit(99)
            except PermissionError:
                pass
        if case.get("mirrors"):
            from cnnlab.data import mnist

            mnist.MIRRORS[:] = case["mirrors"]
        try:
            result = cli(case["argv"])  # type: ignore[operator]
            code = result if isinstance(result, int) else 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_case(case: dict, cli: object) -> dict:
    """Fork, run the case in the child, wait for it (killing it after TIMEOUT_S)."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        run_child(case, cli)
    deadline = started + TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    return {
        "id": case["id"],
        "exit": os.waitstatus_to_exitcode(status),
        "seconds": round(time.monotonic() - started, 3),
        "stdout": Path(case["stdout"]).read_text(errors="replace"),
        "stderr": Path(case["stderr"]).read_text(errors="replace"),
    }


def main() -> int:
    spec = json.load(sys.stdin)
    from cnnlab.cli.main import main as cli  # imported once, before any fork

    watch = Path(spec["watch"])
    results = []
    for case in spec["cases"]:
        before = tree_hashes(watch)
        result = run_case(case, cli)
        result["disk_changes"] = changes(before, tree_hashes(watch))
        results.append(result)
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
