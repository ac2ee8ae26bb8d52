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
    from arcsynth.cli import bench, verify

    app.command("verify", help=verify.__doc__)(verify.verify)
    app.add_typer(bench.app, name="bench")


_register()


def main() -> None:
    app()
