"""`arcsynth view RUN_DIR [RUN_B]`: the interactive trace viewer (Textual)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from arcsynth.cli.common import fail


def view(
    run_dir: Path = typer.Argument(..., help="A run directory written by `arcsynth solve` (it holds trace.jsonl); a running run is followed live."),
    compare: Optional[Path] = typer.Argument(None, help="A second run of the same tasks to compare with (key c in the viewer)."),
) -> None:
    """Browse a run: tasks, candidates by round, programs, prompts, completions, grids, diffs, votes.

    Keys: j/k and arrows move, enter or l opens, h or escape goes back, s sorts, f filters by
    status, t jumps to a task id, / searches prompts, completions and programs (n/N: next and
    previous match), c compares with RUN_B, r reloads, ? lists every key, q quits.
    """
    import sys

    from viewer.index import RunIndexError

    if not sys.stdout.isatty():
        fail("arcsynth view needs a terminal; for a pipe or a log use: arcsynth show RUN_DIR [TASK_ID]")
    try:
        from viewer.app import ViewerApp

        app = ViewerApp(run_dir, compare)
    except RunIndexError as e:
        fail(str(e))
    app.run()
