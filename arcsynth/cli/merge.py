"""`arcsynth merge RUN... --out DIR`: join the shard runs of one selection into one run directory.

For schedulers without Ray (Slurm arrays, one job per machine): run
``arcsynth solve CONFIG --shard K/N --out runs/x-K`` for K = 0..N-1, then merge the N
directories. The merged run has the config without ``data.shard``, every shard's
trace, results and passing programs, and summary, submission and score over the
whole selection, as one process solving it would have written them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer
from rich.markup import escape

from arcsynth.cli.common import fail, stdout_console


def merge(
    runs: list[Path] = typer.Argument(..., help="The run directories of the shards (`arcsynth solve --shard K/N`), all N of them.", show_default=False),
    out: Path = typer.Option(..., "--out", help="Run directory to create for the merged run (must be new or empty).", show_default=False),
) -> None:
    """Merge the shard runs of one selection (`solve --shard K/N`) into one run directory."""
    from agent.merge import MergeError, merge_runs
    from agent.rundir import RecordError, RunDirError
    from arcsynth.cli.solve import _index, _summary_table

    if any(Path(r).resolve() == out.resolve() for r in runs):
        fail(f"--out {out} is one of the runs to merge; choose a new directory")
    created_here = not out.exists()
    try:
        outcome = merge_runs(list(runs), out, argv=list(sys.argv))
    except MergeError as e:
        fail(f"cannot merge: {e}")
    except RunDirError as e:
        if not isinstance(e, RecordError):  # --out exists and is not empty, or cannot be created
            fail(str(e))
        if created_here:
            shutil.rmtree(out, ignore_errors=True)
        fail(str(e), code=3)
    except OSError as e:
        # Checks passed but writing failed (disk full, permissions): leave no half-merged run behind.
        if created_here:
            shutil.rmtree(out, ignore_errors=True)
        fail(str(e), code=3)
    _index(outcome.run_dir)
    console = stdout_console()
    console.print(escape(f"merged {len(runs)} shard run(s) into {outcome.run_dir}"))
    console.print(_summary_table(outcome.summary, outcome.run_dir))
    if outcome.undone:
        console.print(escape(
            f"{len(outcome.undone)} task(s) of the selection have no finished result (e.g. {outcome.undone[0]}); "
            f"finish them with: arcsynth solve --resume {outcome.run_dir}"
        ))
    console.print(escape(f"run directory: {outcome.run_dir}"))
