"""Hostile and broken inputs through the real CLI (issue 9): each is refused with exit code 2 and
one line naming the file and the problem, no traceback, no file on disk changed, no payload run.
The error line is the last on stderr and the only one; the command's progress log may come
before it (for example "decoding 4 images of ..."), and the report counts those lines.

The inputs are tests/corpus/ (made by tools/make_corpus.py; its manifest.json lists each case's
files, command line and the words its error must contain). Every case runs in its own folder
under the pytest tmp, as a process of its own (tests/reliability/cli_driver.py), with the
capabilities that let root read any file given up, so that mode-000 files are unreadable.

The figures go to $CNNLAB_RELIABILITY_OUT/hostile_inputs.json (a folder; else the pytest tmp):
{"test", "inputs_tried", "refused_cleanly", "carrying_code", "payloads_run",
 "by_kind": {kind: {"tried", "refused_cleanly"}},
 "cases": [{"id", "kind", "problem", "command", "exit", "error", "refused_cleanly",
            "log_lines_before", "known_failure"}]}
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus"
DRIVER = Path(__file__).resolve().parent / "cli_driver.py"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
CASES = {case["id"]: case for case in MANIFEST["cases"]}
MARKER_ENV = MANIFEST["marker_env"]
REPORT_ENV = "CNNLAB_RELIABILITY_OUT"
REPORT_NAME = "hostile_inputs.json"

# cases that still fail, and where the fix belongs; a fixed one fails until it is taken off
KNOWN_FAILURES: dict[str, str] = {}


@dataclass
class Outcome:
    """What the corpus run found: each case's result and what was wrong with it."""

    root: Path
    results: dict[str, dict[str, Any]]
    problems: dict[str, list[str]]


def _overlay(src: Path, dest: Path) -> None:
    """Copy the files under `src` into `dest`; each replaces X and X.gz of its own name."""
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        target = dest / path.relative_to(src)
        stem = target.name.removesuffix(".gz")
        for other in (target.with_name(stem), target.with_name(f"{stem}.gz")):
            other.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _fill(text: str, work: Path) -> str:
    return text.replace("{work}", str(work))


def _problems(case: dict[str, Any], result: dict[str, Any], payload_ran: bool) -> list[str]:
    """Every way the result falls short of the issue's promise; empty when it keeps it."""
    found = []
    if result["exit"] != 2:
        found.append(f"exit code {result['exit']}, expected 2")
    stderr = result["stderr"]
    lines = stderr.splitlines()
    if "Traceback" in stderr:
        found.append("a traceback on stderr")
    errors = [line for line in lines if line.startswith("cnnlab: error: ")]
    if len(errors) != 1 or not lines[-1].startswith("cnnlab: error: "):
        found.append(f"{len(errors)} 'cnnlab: error:' lines, expected one, last on stderr")
    error = lines[-1] if lines else ""
    missing = [fragment for fragment in case["expect"] if fragment not in error]
    if missing:
        found.append(f"the error does not say {missing}")
    if result["disk_changes"]:
        found.append(f"files on disk changed: {result['disk_changes'][:5]}")
    if payload_ran:
        found.append("the pickled payload ran (the marker file exists)")
    return found


def _write_report(outcome: Outcome) -> None:
    """The figures for docs/reliability.md: the JSON described in the module docstring."""
    rows = []
    for case_id, case in CASES.items():
        result = outcome.results[case_id]
        lines = result["stderr"].splitlines()
        rows.append(
            {
                "id": case_id,
                "kind": case["kind"],
                "problem": case["problem"],
                "command": "cnnlab " + shlex.join(case["argv"]),
                "exit": result["exit"],
                "error": lines[-1] if lines else "",
                "log_lines_before": max(len(lines) - 1, 0),
                "refused_cleanly": not outcome.problems[case_id],
                "known_failure": KNOWN_FAILURES.get(case_id),
            }
        )
    kinds = sorted({row["kind"] for row in rows})
    report = {
        "test": "tests/reliability/test_hostile_inputs.py",
        "inputs_tried": len(rows),
        "refused_cleanly": sum(row["refused_cleanly"] for row in rows),
        "carrying_code": sum(case["carries_code"] for case in CASES.values()),
        "payloads_run": sum(any("payload ran" in p for p in outcome.problems[c]) for c in CASES),
        "by_kind": {
            kind: {
                "tried": sum(row["kind"] == kind for row in rows),
                "refused_cleanly": sum(
                    row["kind"] == kind and row["refused_cleanly"] for row in rows
                ),
            }
            for kind in kinds
        },
        "cases": rows,
    }
    folder = Path(os.environ.get(REPORT_ENV) or outcome.root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n")


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """Every corpus case run once through the CLI (about 20 s on one core)."""
    root = tmp_path_factory.mktemp("hostile")
    work, logs, markers = root / "cases", root / "logs", root / "markers"
    for folder in (work, logs, markers):
        folder.mkdir()
    spec = []
    for case_id, case in CASES.items():
        case_dir = work / case_id
        case_dir.mkdir()
        for layer in case["layers"]:
            src, dest = layer.split(":")
            _overlay(CORPUS / src, case_dir / dest)
        for fifo in case["fifos"]:
            Path(_fill(fifo, case_dir)).parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(_fill(fifo, case_dir))
        unreadable = [_fill(p, case_dir) for p in case["unreadable"]]
        for path in unreadable:
            os.chmod(path, 0)
        spec.append(
            {
                "id": case_id,
                "argv": [_fill(a, case_dir) for a in case["argv"]],
                "cwd": str(case_dir),
                "env": {MARKER_ENV: str(markers / case_id)},
                "unreadable": unreadable,
                "mirrors": [_fill(m, case_dir) for m in case["mirrors"]],
                "stdout": str(logs / f"{case_id}.out"),
                "stderr": str(logs / f"{case_id}.err"),
            }
        )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CNNLAB_CACHE": str(root / "cache")}
    env.pop("CNNLAB_DATA", None)
    done = subprocess.run(
        [sys.executable, str(DRIVER)],
        input=json.dumps({"watch": str(work), "cases": spec}),
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for case in spec:
        for path in case["unreadable"]:
            os.chmod(path, 0o644)
    results = {r["id"]: r for r in json.loads(done.stdout)}
    problems = {
        case_id: _problems(case, results[case_id], (markers / case_id).exists())
        for case_id, case in CASES.items()
    }
    found = Outcome(root, results, problems)
    _write_report(found)
    return found


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_hostile_input_is_refused_in_one_line(case_id: str, outcome: Outcome) -> None:
    problems = outcome.problems[case_id]
    result = outcome.results[case_id]
    detail = f"{CASES[case_id]['problem']}: {problems}\nstderr: {result['stderr'][-2000:]}"
    if case_id in KNOWN_FAILURES:
        assert problems, f"{case_id} is fixed: take it off KNOWN_FAILURES"
        pytest.xfail(f"{KNOWN_FAILURES[case_id]}; {detail}")
    assert not problems, detail


def test_the_payloads_would_run_if_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The code-carrying files are real threats: plain pickle and torch.load run them."""
    marker = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    for name in ("pickle.safetensors", "pickle-protocol0.safetensors"):
        pickle.loads((CORPUS / "checkpoints" / name).read_bytes())
        assert marker.read_text() == "the payload ran", name
        marker.unlink()
    torch.load(CORPUS / "checkpoints" / "torch-save.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    batch = CORPUS / "cifar10" / "pickle-runs-code" / "cifar10" / "cifar-10-batches-py"
    pickle.loads((batch / "data_batch_3").read_bytes())
    assert marker.exists()


def test_the_driver_behaves_like_the_cnnlab_command(outcome: Outcome) -> None:
    """One case again as `python -m cnnlab`: the same exit code and the same stderr."""
    case_id = "checkpoint-torch-save"
    case_dir = outcome.root / "cases" / case_id
    argv = [_fill(a, case_dir) for a in CASES[case_id]["argv"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", *argv],
        capture_output=True,
        text=True,
        cwd=case_dir,
        env=env,
        check=False,
        timeout=120,
    )
    result = outcome.results[case_id]
    assert (done.returncode, done.stderr) == (result["exit"], result["stderr"])


def test_the_figures_are_written_for_the_reliability_page(outcome: Outcome) -> None:
    folder = Path(os.environ.get(REPORT_ENV) or outcome.root)
    report = json.loads((folder / REPORT_NAME).read_text())
    assert report["inputs_tried"] == len(CASES) == len(report["cases"])
    assert report["payloads_run"] == 0
    assert report["refused_cleanly"] == len(CASES) - len(KNOWN_FAILURES)


def test_the_corpus_is_what_make_corpus_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("make_corpus", REPO / "tools" / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_corpus", module)  # its dataclass looks itself up
    spec.loader.exec_module(module)
    module.make_corpus(tmp_path / "corpus")
    assert module.differences(tmp_path / "corpus", CORPUS) == [], "run: python tools/make_corpus.py"
