"""Writes docs/reliability.md: issue 9's guarantees, the tests that prove each, and the figures
the last run of those tests wrote.

usage: python tools/reliability_doc.py FOLDER [--out FILE]

FOLDER is the $CNNLAB_RELIABILITY_OUT the tests ran with (RUN_TESTS below). The figures are
read from the JSON files the tests write there (FIGURES); a file that is missing is shown
as "not run". Tests that are expected to fail (`pytest.mark.xfail`) and the hostile inputs
still refused badly are listed as known failures, read from the test files and the
figures, so the page never claims more than the last run showed.
tests/test_reliability_doc.py fails when a test the page names no longer exists, or when
the page's guarantees table is not GUARANTEES.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "reliability.md"
RUN_TESTS = (
    "tests/reliability",
    "tests/serve/test_load_and_fuzz.py",
    "tests/training/test_kill_resume.py",
)


@dataclass(frozen=True)
class Guarantee:
    name: str
    promise: str
    tests: tuple[str, ...]  # path::function


CRASH = "tests/training/test_crash_safety.py"
CHECKPOINT = "tests/test_checkpoint.py"
STATE = "tests/training/test_training_state.py"
PROPERTIES = "tests/reliability/test_properties.py"
API = "tests/serve/test_api.py"

GUARANTEES = (
    Guarantee(
        "Crash-safe training",
        "Checkpoints every N steps or minutes hold all state (model, optimizer, schedule, "
        "every RNG, data order and position); writes are atomic and keep the previous file "
        "until the new one is complete; one process at a time writes a run. Killed at any "
        "moment and resumed, a run ends bit-identical to one never stopped.",
        (
            "tests/training/test_kill_resume.py::"
            "test_sigkill_at_10_random_moments_then_resume_gives_bit_identical_weights",
            f"{CRASH}::test_checkpoints_within_epochs_resume_bit_for_bit",
            f"{CRASH}::test_the_schedule_counts_steps_over_the_run_and_minutes_since_the_last_save",
            f"{CRASH}::test_a_second_process_cannot_write_a_run_and_a_killed_holder_blocks_nothing",
            f"{CRASH}::test_the_lock_is_held_while_training_and_let_go_after",
            f"{CRASH}::test_killed_writes_leave_only_temporaries_that_the_next_run_clears",
            f"{CHECKPOINT}::test_writes_are_atomic_and_leave_no_temporary_files",
            f"{STATE}::test_every_kind_of_value_comes_back_exactly",
        ),
    ),
    Guarantee(
        "Numerical failure",
        "A NaN or infinite loss stops the run with one line naming the step, keeps the last "
        "good checkpoint and suggests --lr, --grad-clip and --skip-nonfinite; "
        "--skip-nonfinite skips such batches and counts them; no checkpoint holds NaN weights.",
        (
            f"{CRASH}::test_a_nan_loss_stops_the_run_at_its_step_with_exit_code_3",
            f"{CRASH}::test_skip_nonfinite_counts_the_batches_it_skips",
            f"{CRASH}::test_a_checkpoint_is_never_saved_with_nan_weights",
        ),
    ),
    Guarantee(
        "Hostile and broken inputs",
        "Truncated or inconsistent IDX files, checksum mismatches, image folders with empty, "
        "non-image, bomb or unreadable files, truncated or foreign checkpoints, pickles "
        "carrying code, bad config files and impossible model arguments: each is one line "
        "naming the file and the problem, exit code 2, no traceback, nothing on disk "
        "changed, no payload run. The inputs are a committed corpus (tools/make_corpus.py).",
        (
            "tests/reliability/test_hostile_inputs.py::test_hostile_input_is_refused_in_one_line",
            "tests/reliability/test_hostile_inputs.py::test_the_payloads_would_run_if_unpickled",
            "tests/reliability/test_hostile_inputs.py::test_the_corpus_is_what_make_corpus_makes",
            f"{CHECKPOINT}::test_a_pickle_file_is_refused_without_being_run",
            f"{CHECKPOINT}::test_truncated_and_foreign_files_are_refused",
            f"{CHECKPOINT}::test_weights_for_another_architecture_are_refused",
            "tests/reliability/test_settings_types.py::"
            "test_a_wrong_type_from_a_caller_is_a_one_line_error",
            "tests/reliability/test_settings_types.py::test_a_config_json_names_itself_in_its_errors",
        ),
    ),
    Guarantee(
        "Silent corruption",
        "Checkpoints and training states carry a SHA-256 of their content, verified before "
        "use: every single-bit flip and every truncation is refused, not loaded. Settings "
        "are plain JSON and RNG states tensors: nothing is unpickled.",
        (
            f"{CHECKPOINT}::test_every_single_bit_flip_and_every_truncation_is_refused",
            f"{CHECKPOINT}::test_a_checkpoint_of_format_1_without_a_checksum_is_refused_clearly",
            f"{STATE}::test_a_changed_bit_or_a_cut_is_refused_naming_the_file",
            f"{STATE}::test_nothing_is_unpickled",
            f"{CRASH}::test_a_corrupted_state_is_refused_before_anything_is_restored",
            f"{CRASH}::test_a_state_of_the_older_pickle_format_is_refused_clearly",
        ),
    ),
    Guarantee(
        "Exit code 3, also under python -O",
        "A non-finite loss stops within one step with exit code 3, the same under `python "
        "-O`: no `assert` statement does any checking in cnnlab's source.",
        (
            f"{CRASH}::test_a_nan_loss_stops_the_run_at_its_step_with_exit_code_3",
            f"{CRASH}::test_a_diverging_run_stops_the_same_under_python_dash_o",
            "tests/reliability/test_no_assert.py::test_the_source_uses_no_assert_statement",
        ),
    ),
    Guarantee(
        "Property-based tests",
        "Hypothesis checks, on hundreds of generated cases each: the IDX round trip for any "
        "shape and type (and any cut or any bytes refused cleanly); the convolution "
        "output-size arithmetic against PyTorch; the loader visits every example exactly "
        "once per epoch for any dataset size, batch size, seed and process count.",
        (
            f"{PROPERTIES}::test_idx_round_trip_keeps_every_bit",
            f"{PROPERTIES}::test_idx_cut_anywhere_is_refused",
            f"{PROPERTIES}::test_idx_decoder_on_any_bytes_gives_a_tensor_or_a_data_error",
            f"{PROPERTIES}::test_conv_output_size_is_pytorchs",
            f"{PROPERTIES}::test_strict_refuses_exactly_when_inputs_are_left_over",
            f"{PROPERTIES}::test_every_example_once_per_epoch",
            f"{PROPERTIES}::test_drop_last_visits_whole_batches_once",
            f"{PROPERTIES}::test_process_shares_make_up_the_single_process_epoch",
        ),
    ),
    Guarantee(
        "The server's exposure",
        "`cnnlab serve` answers on 127.0.0.1 unless told otherwise and says so; requests "
        "whose Host is not its own get 421 (DNS rebinding); no path is read from a request; "
        "the body size (413) and the image's pixels (400) are capped before decoding; only "
        "PNG and JPEG are accepted (415); every error is JSON.",
        (
            f"{API}::test_the_serve_command_answers_on_loopback_only_to_its_own_host",
            f"{API}::test_only_requests_addressed_to_this_server_are_answered",
            f"{API}::test_a_wildcard_bind_accepts_ip_addresses_but_not_names",
            f"{API}::test_bodies_over_the_limit_get_413_declared_or_streamed",
            f"{API}::test_huge_declared_dimensions_are_refused_before_decoding",
            f"{API}::test_bad_images_get_a_json_error",
            f"{API}::test_unknown_routes_and_methods_are_json_errors",
            f"{API}::test_page_and_its_files_come_from_the_package_only",
        ),
    ),
    Guarantee(
        "The server under load and fuzz",
        "The real `cnnlab serve` process takes thousands of requests from several threads, a "
        "third of them malformed: no 5xx, no crash and no traceback, memory bounded, and "
        "every good request answered as a direct prediction of the same image.",
        (
            "tests/serve/test_load_and_fuzz.py::test_3000_requests_from_8_threads",
            "tests/serve/test_load_and_fuzz.py::"
            "test_a_body_cut_short_is_refused_without_a_logged_exception",
            f"{API}::test_concurrent_requests_to_a_real_server_are_all_answered_correctly",
        ),
    ),
    Guarantee(
        "Disk full and read-only",
        "Saving into a full or read-only location is one clear error naming the file, and "
        "the previous checkpoint stays intact and loadable; the run resumes from it.",
        (
            f"{CHECKPOINT}::test_a_failed_save_is_one_clear_error_and_keeps_the_previous_checkpoint",
            f"{CRASH}::test_a_full_disk_is_one_clear_error_and_the_last_checkpoint_stays",
        ),
    ),
)


def _yes(value: Any) -> str:
    return {True: "yes", False: "**no**"}.get(value, "?")


def _signed(value: Any) -> str:
    return f"{value:+}" if isinstance(value, int | float) else "?"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]], right: int = 0) -> list[str]:
    """A markdown table; the last `right` columns right-aligned."""
    align = ["---"] * (len(header) - right) + ["---:"] * right
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def guarantees_table() -> str:
    rows = [
        [f"**{g.name}**", g.promise, "<br>".join(f"`{t}`" for t in g.tests)] for g in GUARANTEES
    ]
    return "\n".join(_table(["guarantee", "what holds", "proven by"], rows))


def kill_figures(r: dict[str, Any]) -> list[str]:
    lines = [
        f"- Training command: `{r.get('command')}` ({r.get('steps')} steps).",
        f"- Kills survived: **{r.get('kills')}** SIGKILLs, "
        f"{r.get('kills_during_a_checkpoint_write')} of them during a checkpoint write, "
        f"{r.get('kills_resumed_within_an_epoch')} resumed within an epoch.",
        f"- Final weights bit-identical to an uninterrupted run: "
        f"{_yes(r.get('final_weights_bit_identical'))}; metrics identical: "
        f"{_yes(r.get('metrics_identical'))}.",
        f"- Kill moments drawn from seed {r.get('moments_seed')}; {r.get('wall_s')} s in all.",
        "",
    ]
    rows = [
        [
            m.get("kill"),
            m.get("aimed_at"),
            _yes(m.get("during_a_checkpoint_write")),
            ", ".join(m.get("files_being_written") or []) or "-",
            m.get("resumes_from", {}).get("step"),
        ]
        for m in r.get("moments", [])
    ]
    header = ["kill", "aimed at", "during a write", "files being written", "resumed at step"]
    return lines + _table(header, rows, right=1)


def hostile_figures(r: dict[str, Any]) -> list[str]:
    lines = [
        f"- Inputs tried: **{r.get('inputs_tried')}**; refused cleanly (exit code 2, one "
        f"line naming the file and the problem, no traceback, nothing on disk changed): "
        f"**{r.get('refused_cleanly')}**.",
        f"- Files carrying code: {r.get('carrying_code')}; payloads run: "
        f"**{r.get('payloads_run')}**.",
        "",
    ]
    rows = [
        [kind, k.get("tried"), k.get("refused_cleanly")]
        for kind, k in sorted(r.get("by_kind", {}).items())
    ]
    return lines + _table(["kind", "tried", "refused cleanly"], rows, right=2)


def load_figures(r: dict[str, Any]) -> list[str]:
    rss = r.get("rss_mib", {})
    statuses = ", ".join(f"{s}: {n:,}" for s, n in r.get("status_counts", {}).items())
    lines = [
        f"- Server: `{r.get('command')}`; CHECKPOINT: {r.get('checkpoint')}.",
        f"- Requests served: **{r.get('requests', 0):,}** from {r.get('threads')} threads "
        f"(seed {r.get('seed')}), {r.get('requests_per_s')} per second: "
        f"{r.get('good', 0):,} good ({r.get('good_explain', 0):,} of them to /api/explain) "
        f"and {r.get('malformed', 0):,} malformed.",
        f"- Good requests answered correctly (the class and probabilities of a direct "
        f"prediction of the same file): **{r.get('good_answered_correctly', 0):,}** of "
        f"{r.get('good', 0):,}.",
        f"- Malformed requests given their expected status: "
        f"**{r.get('malformed_answered_as_expected', 0):,}** of {r.get('malformed', 0):,}; "
        f"5xx answers: **{r.get('server_errors_5xx')}**. Statuses: {statuses}.",
        f"- Server alive afterwards: {_yes(r.get('server_alive_after'))} (/healthz "
        f"{r.get('healthz_after')}); tracebacks in its log: {r.get('tracebacks_in_server_log')}.",
        f"- Memory (VmRSS): {rss.get('after_warmup')} MiB after the warm-up, "
        f"{rss.get('end')} MiB at the end: **{_signed(r.get('rss_growth_mib'))} MiB** (bound "
        f"{r.get('rss_growth_bound_mib')}); the second half "
        f"{_signed(r.get('rss_growth_second_half_mib'))} MiB (bound "
        f"{r.get('rss_second_half_bound_mib')}); peak {rss.get('peak')} MiB.",
        "",
    ]
    kinds = sorted(r.get("by_kind", {}).items(), key=lambda i: (i[0][:4] != "good", i[0].lower()))
    rows = [
        [
            kind,
            f"{k.get('sent', 0):,}",
            ", ".join(k.get("expected", [])),
            ", ".join(f"{s}: {n:,}" for s, n in k.get("got", {}).items()),
        ]
        for kind, k in kinds
    ]
    return lines + _table(["request", "sent", "expected", "answered"], rows)


@dataclass(frozen=True)
class Figures:
    file: str
    title: str
    render: Callable[[dict[str, Any]], list[str]]


FIGURES = (
    Figures("kill_resume.json", "Crash-safe training: killed and resumed", kill_figures),
    Figures("hostile_inputs.json", "Hostile and broken inputs", hostile_figures),
    Figures("server_load_fuzz.json", "The server under load and fuzz", load_figures),
)


def read_figures(folder: Path) -> dict[str, dict[str, Any] | None]:
    """Each FIGURES file's content, or None when it is missing."""
    found = {}
    for figures in FIGURES:
        path = folder / figures.file
        found[figures.file] = json.loads(path.read_text()) if path.is_file() else None
    return found


def _when(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))


def headline(data: dict[str, dict[str, Any] | None]) -> str:
    """Kills survived, inputs tried, requests served: one line each figure, or 'not run'."""
    kill, hostile, load = (data[f.file] for f in FIGURES)
    parts = [
        "kills survived: not run"
        if kill is None
        else f"kills survived: {kill.get('kills')} (final weights bit-identical: "
        f"{_yes(kill.get('final_weights_bit_identical'))})",
        "hostile inputs tried: not run"
        if hostile is None
        else f"hostile inputs tried: {hostile.get('inputs_tried')} "
        f"({hostile.get('refused_cleanly')} refused cleanly)",
        "requests served under load and fuzz: not run"
        if load is None
        else f"requests served under load and fuzz: {load.get('requests', 0):,} "
        f"({load.get('server_errors_5xx')} 5xx, {load.get('good_answered_correctly', 0):,} "
        f"of {load.get('good', 0):,} good ones answered correctly)",
    ]
    return "The last run: " + "; ".join(parts) + "."


def xfail_tests() -> list[tuple[str, str]]:
    """(path::function, reason) for every test in GUARANTEES marked pytest.mark.xfail."""
    found = []
    for path in sorted({t.split("::")[0] for g in GUARANTEES for t in g.tests}):
        tree = ast.parse((REPO / path).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith(
                    "mark.xfail"
                ):
                    reason = next((k.value for k in decorator.keywords if k.arg == "reason"), None)
                    text = ast.literal_eval(reason) if reason is not None else "(no reason)"
                    found.append((f"{path}::{node.name}", text))
    return found


def known_failures(data: dict[str, dict[str, Any] | None]) -> list[str]:
    lines = [f"- `{test}` (expected to fail): {reason}" for test, reason in xfail_tests()]
    hostile = data["hostile_inputs.json"] or {}
    for case in hostile.get("cases", []):
        if case.get("known_failure"):
            lines.append(f"- hostile input `{case['id']}`: {case['known_failure']}")
    return lines or ["None."]


def render_doc(folder: Path) -> str:
    data = read_figures(folder)
    run = f"CNNLAB_RELIABILITY_OUT=DIR python -m pytest {' '.join(RUN_TESTS)}"
    lines = [
        "# Reliability",
        "",
        "Generated by `python tools/reliability_doc.py DIR` from the figures the tests write "
        "into DIR; do not edit by hand. It lists each guarantee of issue 9, the tests that "
        "prove it (`path::function`; tests/test_reliability_doc.py fails when one is gone) "
        "and what the last run of those tests measured. To regenerate:",
        "",
        "```bash",
        f"{run}",
        "python tools/reliability_doc.py DIR",
        "```",
        "",
        headline(data),
        "",
        "## Guarantees and the tests that prove them",
        "",
        guarantees_table(),
        "",
        "## Figures from the last run",
    ]
    for figures in FIGURES:
        record = data[figures.file]
        lines += ["", f"### {figures.title}", ""]
        if record is None:
            lines.append(f"Not run: no `{figures.file}` in the folder.")
            continue
        when = _when(folder / figures.file)
        test = record.get("test", "?").split("::")[0]
        lines.append(
            f"From `{figures.file}`, written {when} by `CNNLAB_RELIABILITY_OUT=DIR python -m "
            f"pytest {test}`."
        )
        lines += ["", *figures.render(record)]
    lines += ["", "## Known failures", "", *known_failures(data), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the CNNLAB_RELIABILITY_OUT the tests used")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default {OUT.relative_to(REPO)}")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"reliability_doc: {args.folder}: not a folder", file=sys.stderr)
        return 2
    args.out.write_text(render_doc(args.folder))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
