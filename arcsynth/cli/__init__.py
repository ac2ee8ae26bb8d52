"""The `arcsynth` command line: one Typer app, one module per subcommand.

Subcommand modules import heavy packages (torch, transformers, the sandbox)
inside their functions so that `arcsynth --help` and `arcsynth tasks` start fast.
"""

from __future__ import annotations

from typing import Optional

import typer
import typer.core

from arcsynth import __version__

# Typer >= 0.2x prints a value type after every option, flags included
# ("--json <bool>"), which reads as if the flag took a value. A flag takes none.
# Older Typer prints no such type and has no such method: nothing to hide there.
_display_type_rich = getattr(typer.core.TyperOption, "display_type_rich", None)


def _flag_type_hidden(self: typer.core.TyperOption, ctx):  # type: ignore[no-untyped-def]
    return None if self.is_flag else _display_type_rich(self, ctx)


if _display_type_rich is not None:
    typer.core.TyperOption.display_type_rich = _flag_type_hidden  # type: ignore[method-assign]

# `-h` as well as `--help`, inherited by every subcommand's context.
CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    context_settings=CONTEXT,
    rich_markup_mode="markdown",
    help="arcsynth: solve ARC-AGI tasks by program synthesis with open-weights models.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"arcsynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """arcsynth: solve ARC-AGI tasks by program synthesis with open-weights models."""


def _register() -> None:
    from arcsynth.cli import bench, export, merge, replay, report, runs, score, show, solve, tasks, verify, view

    app.add_typer(tasks.app, name="tasks")
    app.command("verify", help=verify.verify.__doc__)(verify.verify)
    app.command("score", help=score.score.__doc__)(score.score)
    app.command("solve", help=solve.__doc__)(solve.solve)
    app.command("replay", help=replay.__doc__)(replay.replay)
    app.command("merge", help=merge.__doc__)(merge.merge)
    app.command("view", help=view.view.__doc__)(view.view)
    app.command("show", help=show.show.__doc__)(show.show)
    app.command("runs", help=runs.runs.__doc__)(runs.runs)
    app.command("report", help=report.report.__doc__)(report.report)
    app.command("export", help=export.export.__doc__)(export.export)
    app.add_typer(bench.app, name="bench")


_register()


def main() -> None:
    app()
