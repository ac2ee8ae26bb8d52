"""Run a program file on a task's train and test inputs in the sandbox and print the verdicts."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import typer

from arcsynth.cli.common import DATASET_HELP, fail


# Exit statuses, for scripts: documented in the command's help and the README.
EXIT_PASS, EXIT_FAIL = 0, 1


def verify(
    program: Path = typer.Argument(..., help="Python file defining transform(grid)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    task: str = typer.Option(..., "--task", "-t", help="Task id within the dataset."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
    pair_timeout: float = typer.Option(None, "--pair-timeout", help="Seconds of CPU time allowed per pair (default: 0.5)."),
    program_timeout: float = typer.Option(None, "--program-timeout", help="Seconds of CPU time allowed for the whole program on every pair, compiling included (default: 2)."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Run even when the machine lacks the minimum isolation layers."),
) -> None:
    """Run a program file on a task's train and test inputs in the sandbox and print the verdicts.

    Exit status: 0 when every train pair passes, 1 when some train pair is wrong, crashes
    or times out, 2 for bad input (unreadable program, unknown dataset or task, no sandbox).
    """
    from arcsynth.datasets import DatasetError, UnknownTaskError, load_dataset
    from arcsynth.task import TaskFormatError
    from sandbox import SandboxConfig, SandboxUnavailable, verify_program

    try:
        source = program.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read program {program}: {e}")
    try:
        the_task = load_dataset(dataset).get(task)
    except (DatasetError, UnknownTaskError, TaskFormatError) as e:
        fail(str(e))
    overrides = {"unsafe": unsafe}
    if pair_timeout is not None:
        overrides["pair_timeout_s"] = pair_timeout
    if program_timeout is not None:
        overrides["candidate_timeout_s"] = program_timeout
    try:
        sandbox_config = SandboxConfig(**overrides)
    except ValueError as e:  # pydantic's ValidationError: a limit <= 0
        fail(f"bad limit: {'; '.join(str(x['msg']) for x in e.errors())}" if hasattr(e, "errors") else str(e))
    try:
        verdict = verify_program(source, the_task, sandbox_config, check_test=True)
    except SandboxUnavailable as e:
        fail(str(e))

    doc = {"task_id": the_task.id, "program": str(program), **verdict.summary()}
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        _print_verdicts(doc, the_task)
    raise typer.Exit(EXIT_PASS if doc["all_train_pass"] else EXIT_FAIL)


def error_summary(error_type: str | None, error: str | None) -> str:
    """'IndexError at line 2: index 100 is out of bounds' from a pair's type and traceback text.

    The sandbox's text is the candidate's own frames ('File "<candidate>", line N, in f')
    followed by 'Type: message'; the innermost frame is where the program failed.
    """
    if not error_type:
        return ""
    lines = [ln.strip() for ln in (error or "").strip().splitlines() if ln.strip()]
    message = lines[-1] if lines else ""
    if message.startswith(error_type + ":"):  # the type is shown once, not twice
        message = message[len(error_type) + 1:].strip()
    elif message == error_type:
        message = ""
    frames = re.findall(r'File "<candidate>", line (\d+)', error or "")
    where = f" at line {frames[-1]}" if frames else ""
    return f"{error_type}{where}" + (f": {message}" if message else "")


def _print_verdicts(doc: dict, task) -> None:  # type: ignore[no-untyped-def]
    from arcsynth.cli.show import Out
    from arcsynth.render import grid_diff, grids_row

    # A table on a terminal, aligned plain lines in a pipe. Out shows program texts
    # as text: '[/oops]' in an error message is not Rich markup (and the sandbox has
    # already written out control characters).
    out = Out(plain=not sys.stdout.isatty())
    rows: list[list[str]] = []
    wrong: list[tuple[str, object, object]] = []
    for split, pairs in (("train", task.train), ("test", task.test)):
        for i, v in enumerate(doc[split]):
            produced = v["output"]
            shape = f"{len(produced)}x{len(produced[0])}" if produced else "-"
            if v["expected_shape"] and not v["shape_match"]:
                shape += f" (want {v['expected_shape'][0]}x{v['expected_shape'][1]})"
            acc = f"{v['cell_accuracy']:.0%}" if v["cell_accuracy"] is not None else "-"
            rows.append([f"{split} {i}", v["status"], shape, acc, f"{v['runtime_s'] * 1000:.1f} ms",
                         error_summary(v["error_type"], v["error"])])
            expected = pairs[i].output
            if v["status"] == "wrong" and produced is not None and expected is not None:
                wrong.append((f"{split} {i}", expected.tolist() if hasattr(expected, "tolist") else expected, produced))
    out.table(f"{doc['program']} on {doc['task_id']}", ["pair", "status", "shape", "cells", "time", "error"], rows)
    for label, expected, produced in wrong:
        out.line(f"{label}: expected | produced | diff (x marks a wrong cell)", style="bold")
        diff = grid_diff(expected, produced)
        items = [("expected", expected, None), ("produced", produced, None)]
        out.lines(grids_row(items + ([("diff", produced, diff)] if diff is not None else []), out.plain))
    verdict = "all train pairs pass" if doc["all_train_pass"] else f"{doc['pairs_passed']}/{len(doc['train'])} train pairs pass"
    out.line(f"{verdict}; isolation: {', '.join(doc['isolation'])}", style="green" if doc["all_train_pass"] else "")
