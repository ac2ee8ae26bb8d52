"""A recorded run made with a scripted model, for the resume and replay tests.

The model is not under test there, so :class:`ScriptedBackend` (a test double) writes
the completions; everything else (prompts, sandbox, verdicts, voting, the run
directory) is real. The recorded run is then replayed by the real replay backend.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from agent.backends.base import Message, SamplingParams
from agent.config import RunConfig, config_to_toml, parse_config
from agent.rundir import RunDir
from scripted_backend import ScriptedBackend, fenced

SMALL_TASKS = [
    "66e6c45b", "be03b35f", "00576224", "4cd1b7b2", "ca8de6ea", "e633a9e5",
    "6ea4a07e", "2072aba6", "68b67ca3", "e133d23d", "48131b3c", "59341089",
]
"""The smallest ARC-AGI-1 evaluation tasks: short prompts, fast programs."""

PROGRAMS = [
    fenced("def transform(grid):\n    return [row[:] for row in grid]"),
    fenced("def transform(grid):\n    return [row[::-1] for row in grid]"),
    fenced("def transform(grid):\n    return grid[::-1]"),
    fenced("def transform(grid):\n    return [list(r) for r in zip(*grid)]"),
    fenced("def transform(grid):\n    return [[c if c else 1 for c in row] for row in grid]"),
    fenced("def transform(grid):\n    raise ValueError('no idea')"),
    "The grid is rotated, I think, but I will not write code.",
    fenced("def transform(grid):\n    return [row + row[::-1] for row in grid] + [row[::-1] + row for row in grid][::-1]"),
]


def script(request_id: str, messages: list[Message], params: SamplingParams) -> list[str]:
    """Deterministic: the programs depend on the request id and the prompt only."""
    key = hashlib.sha256((request_id + messages[-1].content).encode()).digest()
    return [PROGRAMS[(key[i] + i) % len(PROGRAMS)] for i in range(params.n)]


def source_config(task_ids: list[str], **overrides: object) -> RunConfig:
    tree = {
        "name": "scripted", "seed": 1, "concurrency": 2,
        "data": {"dataset": "arc1:eval", "tasks": task_ids},
        "sampling": {"samples_per_prompt": 3, "max_tokens": 64},
        "budget": {"rounds": 2, "first_prompts": 1, "refine_prompts": 1, "stop_after_passing": 2},
        # Generous limits: these programs take milliseconds, and a timeout caused by a
        # loaded machine would make the recorded verdicts differ from the replayed ones.
        "sandbox": {"workers": 2, "pair_timeout_s": 10.0, "candidate_timeout_s": 30.0},
    }
    return parse_config(tree, [f"{k}={v}" for k, v in overrides.items()])


def make_scripted_run(path: Path, task_ids: list[str] = SMALL_TASKS, cfg: RunConfig | None = None,
                      backend: ScriptedBackend | None = None) -> Path:
    """Record a whole run into ``path`` with the scripted model (or ``backend``); returns ``path``."""
    from arcsynth.cli.solve import execute_run, select_run_tasks

    cfg = cfg or source_config(list(task_ids))
    dataset, tasks = select_run_tasks(cfg)
    rd = RunDir.create(path)
    rd.write_config(config_to_toml(cfg))
    rd.write_args(["make_scripted_run"])
    asyncio.run(execute_run(cfg, rd, tasks, argv=["make_scripted_run"], resumed=False,
                            dataset_name=dataset.name, live=False, backend=backend or ScriptedBackend(script)))
    return path
