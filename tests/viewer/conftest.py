"""Shared fixtures of the viewer tests: a real small run recorded with the scripted model."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))  # recorded_run, scripted_backend

from recorded_run import SMALL_TASKS, make_scripted_run  # noqa: E402

VIEWER_TASKS = SMALL_TASKS[:4]


@pytest.fixture(scope="session")
def recorded_run_master(tmp_path_factory) -> Path:
    """A finished run of four ARC-AGI-1 eval tasks (scripted model, real sandbox). Do not modify."""
    return make_scripted_run(tmp_path_factory.mktemp("viewer") / "run", VIEWER_TASKS)


@pytest.fixture
def recorded_run(recorded_run_master, tmp_path) -> Path:
    """A private copy of the recorded run (tests may append to it or cut it), without an index."""
    dst = tmp_path / recorded_run_master.name
    shutil.copytree(recorded_run_master, dst, ignore=shutil.ignore_patterns("index.sqlite*"))
    return dst
