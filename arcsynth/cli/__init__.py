"""The `arcsynth` command line: one Typer app, one module per subcommand.

Subcommand modules import heavy packages (torch, transformers, the sandbox)
inside their functions so that `arcsynth --help` and `arcsynth tasks` start fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="arcsynth: solve ARC-AGI tasks by program synthesis with open-weights models.",
)


def _register() -> None:
    from arcsynth.cli import bench, replay, report, runs, score, show, solve, tasks, verify

    app.add_typer(tasks.app, name="tasks")
    app.command("verify", help=verify.__doc__)(verify.verify)
    app.command("score", help=score.score.__doc__)(score.score)
    app.command("solve", help=solve.__doc__)(solve.solve)
    app.command("replay", help=replay.__doc__)(replay.replay)
    app.command("show", help=show.show.__doc__)(show.show)
    app.command("runs", help=runs.runs.__doc__)(runs.runs)
    app.command("report", help=report.report.__doc__)(report.report)
    app.add_typer(bench.app, name="bench")


_register()


def main() -> None:
    app()
