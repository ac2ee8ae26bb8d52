"""Small pieces every subcommand shares: error exit, consoles."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# Exit status for bad input (files, ids, configs), distinct from 1 (a crash).
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one clear error line on stderr and exit; no traceback for user errors."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def stdout_console() -> Console:
    """A console that draws colour on a terminal and plain text elsewhere."""
    return Console(highlight=False, soft_wrap=True, no_color=not sys.stdout.isatty())
