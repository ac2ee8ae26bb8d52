"""`arcsynth tasks`: list the tasks of a dataset and draw one."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from arcsynth.cli.common import DATASET_HELP, fail
from arcsynth.datasets import Dataset, DatasetError, UnknownTaskError, load_dataset, select_tasks
from arcsynth.grid import shape_str
from arcsynth.render import render_task, render_task_plain
from arcsynth.task import Task, TaskFormatError

app = typer.Typer(no_args_is_help=True, help="List the tasks of a dataset, or draw one task's grids.")


SOLUTIONS_HELP = "Kaggle `*_solutions.json` with the test outputs (default: the one next to a `*_challenges.json` file)."
LENIENT_HELP = "Skip invalid tasks (reported on stderr) instead of stopping at the first one."
PLAIN_HELP = "Print digits instead of coloured cells (the default when stdout is not a terminal)."


def load_or_fail(spec: str, *, lenient: bool = False, solutions: Optional[str] = None, warn: bool = True) -> Dataset:
    """:func:`load_dataset` for the CLI: user errors exit 2; a lenient load's skipped tasks go to stderr."""
    try:
        ds = load_dataset(spec, lenient=lenient, solutions=solutions)
    except (DatasetError, TaskFormatError) as e:
        fail(str(e))
    for err in ds.errors if warn else ():
        typer.echo(f"warning: skipped invalid task: {err}", err=True)
    return ds


def _sizes(task: Task) -> tuple[str, str]:
    train = list(dict.fromkeys(f"{shape_str(p.input)}->{shape_str(p.output)}" for p in task.train if p.output is not None))
    test = list(dict.fromkeys(shape_str(p.input) for p in task.test))
    return ", ".join(train), ", ".join(test)


def _task_summary(task: Task) -> dict:
    def shape(g):
        return None if g is None else list(g.shape)

    return {
        "id": task.id,
        "n_train": len(task.train),
        "n_test": len(task.test),
        "train": [{"input": shape(p.input), "output": shape(p.output)} for p in task.train],
        "test": [{"input": shape(p.input), "output": shape(p.output)} for p in task.test],
    }


@app.command("list")
def list_tasks(
    dataset: Annotated[str, typer.Argument(help=DATASET_HELP, show_default=False)],
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Show at most this many tasks.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: ids, pair counts and grid shapes as height, width pairs.")] = False,
    plain: Annotated[bool, typer.Option("--plain", help="Print plain text instead of a table (the default when stdout is not a terminal).")] = False,
    lenient: Annotated[bool, typer.Option("--lenient", help=LENIENT_HELP)] = False,
    solutions: Annotated[Optional[str], typer.Option("--solutions", help=SOLUTIONS_HELP)] = None,
) -> None:
    """List task ids with their train/test pair counts and grid sizes (height x width)."""
    ds = load_or_fail(dataset, lenient=lenient, solutions=solutions)
    tasks = select_tasks(ds, limit=limit)
    if as_json:
        out = {
            "dataset": ds.name,
            "n_tasks": len(ds),
            "tasks": [_task_summary(t) for t in tasks],
            "errors": [str(e) for e in ds.errors],
        }
        typer.echo(json.dumps(out))
        return
    console = Console(emoji=False)  # no emoji: ":train:" in "arc1:train:" is a picture code
    if plain or not console.is_terminal:
        for t in tasks:
            train, test = _sizes(t)
            typer.echo(f"{t.id}  {len(t.train)} train  {len(t.test)} test  train {train}  test {test}")
        typer.echo(f"# {len(tasks)} of {len(ds)} tasks in {ds.name}")
        return
    table = Table(title=escape(f"{ds.name}: {len(tasks)} of {len(ds)} tasks"))
    for col in ("task", "train", "test", "train sizes (in->out)", "test input sizes"):
        table.add_column(col)
    for t in tasks:
        train, test = _sizes(t)
        table.add_row(t.id, str(len(t.train)), str(len(t.test)), train, test)
    console.print(table)


@app.command("show")
def show_task(
    dataset: Annotated[str, typer.Argument(help=DATASET_HELP, show_default=False)],
    task_id: Annotated[str, typer.Argument(help="Id of the task to draw.", show_default=False)],
    plain: Annotated[bool, typer.Option("--plain", help=PLAIN_HELP)] = False,
    hide_test_outputs: Annotated[bool, typer.Option("--hide-test-outputs", help="Do not draw the test outputs (the answers).")] = False,
    solutions: Annotated[Optional[str], typer.Option("--solutions", help=SOLUTIONS_HELP)] = None,
) -> None:
    """Draw every pair of one task: input and output side by side, with their sizes."""
    # Lenient and quiet: one broken task elsewhere in a directory should not hide this one.
    ds = load_or_fail(dataset, lenient=True, solutions=solutions, warn=False)
    try:
        task = ds.get(task_id)
    except UnknownTaskError as e:
        bad = [err for err in ds.errors if err.task_id == task_id]
        fail(str(bad[0]) if bad else str(e))
    console = Console(emoji=False)  # no emoji: ":train:" in "arc1:train:" is a picture code
    if plain or not console.is_terminal:
        typer.echo(render_task_plain(task, show_test_outputs=not hide_test_outputs), nl=False)
    else:
        console.print(render_task(task, show_test_outputs=not hide_test_outputs))
