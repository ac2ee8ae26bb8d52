"""Run a program file on a task's train and test inputs in the sandbox and print the verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from arcsynth.cli.common import fail, stdout_console


def verify(
    program: Path = typer.Argument(..., help="Python file defining transform(grid)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset: arc1:train, arc1:eval, arc2:train, arc2:eval, a task directory, a task file or a Kaggle *_challenges.json."),
    task: str = typer.Option(..., "--task", "-t", help="Task id within the dataset."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
    pair_timeout: float = typer.Option(None, "--pair-timeout", help="Seconds allowed per pair (default: the sandbox default)."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Run even when the machine lacks the minimum isolation layers."),
) -> None:
    """Run a program file on a task's train and test inputs in the sandbox and print the verdicts."""
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
    try:
        verdict = verify_program(source, the_task, SandboxConfig(**overrides), check_test=True)
    except SandboxUnavailable as e:
        fail(str(e))

    doc = {"task_id": the_task.id, "program": str(program), **verdict.summary()}
    if as_json:
        typer.echo(json.dumps(doc))
        return
    _print_verdicts(doc)


def _print_verdicts(doc: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()
    # Program texts are shown as plain Text: '[/oops]' in an error message is
    # not Rich markup (the sandbox already wrote out control characters).
    table = Table(title=Text(f"{doc['program']} on {doc['task_id']}"))
    for col in ("pair", "status", "shape", "cells", "time", "error"):
        table.add_column(col)
    colour = {"pass": "green", "wrong": "yellow", "unchecked": "cyan"}
    for split in ("train", "test"):
        for i, v in enumerate(doc[split]):
            out = v["output"]
            shape = f"{len(out)}x{len(out[0])}" if out else "-"
            if v["expected_shape"] and not v["shape_match"]:
                shape += f" (want {v['expected_shape'][0]}x{v['expected_shape'][1]})"
            acc = f"{v['cell_accuracy']:.0%}" if v["cell_accuracy"] is not None else "-"
            err = f"{v['error_type']}: {(v['error'] or '').strip().splitlines()[-1] if v['error'] else ''}" if v["error_type"] else ""
            st = v["status"]
            table.add_row(f"{split} {i}", f"[{colour.get(st, 'red')}]{st}[/]", shape, acc, f"{v['runtime_s'] * 1000:.1f} ms", Text(err))
    console.print(table)
    verdict = "[green]all train pairs pass[/]" if doc["all_train_pass"] else f"{doc['pairs_passed']}/{len(doc['train'])} train pairs pass"
    console.print(f"{verdict}; isolation: {', '.join(doc['isolation'])}")
