"""`arcsynth score`: score a Kaggle-format submission.json against a dataset by ARC Prize rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from arcsynth.cli.common import DATASET_HELP
from arcsynth.cli.tasks import SOLUTIONS_HELP, fail, load_or_fail

if TYPE_CHECKING:
    from arcsynth.scoring import ScoreReport


def _plural(n: int | float, noun: str) -> str:
    return f"{n:g} {noun}" + ("" if n == 1 else "s")


def _rows(report: ScoreReport, show_missing: bool) -> list:
    # A submission for 2 of 400 tasks is scored over all 400 (ARC Prize rules), but
    # 398 rows of 'missing' bury the two that were submitted: they are counted in the
    # summary line and listed only on request.
    return [t for t in report.tasks if show_missing or not t.missing]


def _print_plain(report: ScoreReport, show_missing: bool) -> None:
    for t in _rows(report, show_missing):
        note = "  missing" if t.missing else ""
        typer.echo(f"{t.task_id}  {sum(t.solved)}/{t.n_test}  {t.score:.3f}{note}")
    typer.echo(_summary(report, show_missing))


def _summary(report: ScoreReport, show_missing: bool) -> str:
    missing = len(report.missing)
    text = (
        f"score {report.score:.4f} ({report.total:g} of {_plural(report.n_tasks, 'task')}) on {report.dataset}; "
        f"{_plural(report.n_tasks_solved, 'task')} fully solved; "
        f"test outputs {report.n_test_outputs_solved}/{report.n_test_outputs}; "
        f"{_plural(missing, 'task')} missing from the submission"
    )
    if missing and not show_missing:
        text += " (scored 0; --show-missing lists them)"
    return text


def _print_table(console: Console, report: ScoreReport, show_missing: bool) -> None:
    table = Table(title=escape(f"{report.dataset}: score {report.score:.4f}"))
    table.add_column("task")
    table.add_column("test outputs solved", justify="right")
    table.add_column("score", justify="right")
    table.add_column("note")
    for t in _rows(report, show_missing):
        style = "green" if all(t.solved) else ("yellow" if any(t.solved) else None)
        table.add_row(t.task_id, f"{sum(t.solved)}/{t.n_test}", f"{t.score:.3f}", "missing" if t.missing else "", style=style)
    console.print(table)
    console.print(Text(_summary(report, show_missing)))


def score(
    submission: Annotated[Path, typer.Argument(help="Kaggle-format submission.json: for each task id, one attempt_1/attempt_2 object per test input.", show_default=False)],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=DATASET_HELP, show_default=False)],
    solutions: Annotated[Optional[str], typer.Option("--solutions", help=SOLUTIONS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    plain: Annotated[bool, typer.Option("--plain", help="Print plain text instead of a table (the default when stdout is not a terminal).")] = False,
    show_missing: Annotated[bool, typer.Option("--show-missing", help="Also list the dataset's tasks that the submission lacks (each scores 0).")] = False,
) -> None:
    """Score a submission: a test output counts if either attempt matches exactly; a task scores
    the fraction of its test outputs; the total is the mean over the dataset's tasks."""
    # Imported here: pydantic is not needed for `arcsynth --help` or other subcommands.
    from arcsynth.scoring import ScoringError, SubmissionError, read_submission, score_submission

    try:
        sub = read_submission(submission)
    except SubmissionError as e:
        fail(str(e))
    ds = load_or_fail(dataset, solutions=solutions)
    try:
        report = score_submission(sub, ds)
    except ScoringError as e:
        fail(f"{submission}: {e}")
    if report.unknown:
        shown = ", ".join(report.unknown[:10]) + (" ..." if len(report.unknown) > 10 else "")
        typer.echo(f"warning: {len(report.unknown)} task(s) in the submission are not in {ds.name} and were ignored: {shown}", err=True)
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=1))
        return
    console = Console(emoji=False)  # no emoji: ":train:" in "arc1:train:" is a picture code
    if plain or not console.is_terminal:
        _print_plain(report, show_missing)
    else:
        _print_table(console, report, show_missing)
