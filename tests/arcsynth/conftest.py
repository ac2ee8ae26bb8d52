"""Shared helpers for the arcsynth core tests: task files written to tmp_path, a CLI runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner


def _run_python(*lines: str, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def run_python():
    """Run lines as a program in a fresh interpreter (for what must hold at import time); its stdout.

    Fails the test, showing the program's stderr, when it exits with an error.
    """
    return _run_python


def _small_task(n_test: int = 1, with_test_output: bool = True) -> dict[str, Any]:
    """A valid official-format task: the rule is 'add 1 to every cell'."""
    train = [
        {"input": [[0, 1], [2, 3]], "output": [[1, 2], [3, 4]]},
        {"input": [[5]], "output": [[6]]},
    ]
    test = []
    for i in range(n_test):
        pair: dict[str, Any] = {"input": [[i, i + 1, i + 2]]}
        if with_test_output:
            pair["output"] = [[i + 1, i + 2, i + 3]]
        test.append(pair)
    return {"train": train, "test": test}


def _write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture
def cli_app() -> typer.Typer:
    """The real `arcsynth` root app, as the console script runs it."""
    from arcsynth.cli import app

    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(name="small_task")
def small_task_fixture():
    """Factory for a valid task dict (see :func:`_small_task`)."""
    return _small_task


@pytest.fixture(name="write_json")
def write_json_fixture():
    """Write an object as JSON to a path, creating folders; returns the path."""
    return _write_json
