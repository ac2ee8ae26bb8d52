"""Small pieces every subcommand shares: error exit, consoles."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

def _dataset_help() -> str:
    from arcsynth.datasets import BUILTIN_DATASETS

    return (
        "Dataset: " + ", ".join(BUILTIN_DATASETS) + "; a directory of task .json files, a task .json file, "
        "or a Kaggle `*_challenges.json` file."
    )


DATASET_HELP = _dataset_help()
"""Help text of every --dataset option, listing the built-in datasets from their one definition."""

# Exit status for bad input (files, ids, configs), distinct from 1 (a crash).
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one clear error line on stderr and exit; no traceback for user errors."""
    Console(stderr=True, highlight=False, soft_wrap=True, emoji=False).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def stdout_console() -> Console:
    """A console that draws colour on a terminal and plain text elsewhere.

    Emoji codes are off: task and dataset names such as 'arc1:train:' would otherwise
    turn into pictures (':train:' is a train emoji).
    """
    return Console(highlight=False, soft_wrap=True, no_color=not sys.stdout.isatty(), emoji=False)
