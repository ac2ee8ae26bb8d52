"""Many tasks in flight at once, sharing one model backend and one sandbox pool.

Up to ``config.concurrency`` tasks search at the same time. Each task verifies a
request's programs as soon as that request returns, so while one task's
programs run in the sandbox the other tasks' requests keep the model busy: the
model never waits for verification, and verification never waits for the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any, Callable, Iterable, Iterator, Optional

from pydantic import BaseModel, Field

from agent.backends.base import Backend
from agent.config import RunConfig
from agent.loop import Recorder, SolveContext, TaskOutcome, Verifier, solve_task
from arcsynth.task import Task


class RunSummary(BaseModel):
    """Totals of one call to :func:`run_tasks` (tasks already done before it are not counted)."""

    tasks: int = Field(description="Tasks searched in this call.")
    skipped_done: int = Field(0, description="Tasks left out because they were already done (resume).")
    solved_train: int = Field(description="Tasks where some program passed every train pair.")
    skipped: int = Field(0, description="Tasks skipped because no prompt fitted.")
    errors: int = Field(0, description="Tasks ended by a backend or sandbox failure.")
    score: Optional[float] = Field(None, description="Mean ARC Prize score over the tasks whose test outputs are known.")
    scored_tasks: int = Field(0, description="Tasks whose test outputs are known.")
    n_programs: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    programs_per_s: float
    completion_tokens_per_s: float
    sandbox: dict[str, Any] = Field(default_factory=dict, description="The sandbox's own counters (throughput included).")
    outcomes: list[TaskOutcome] = Field(default_factory=list, description="Per task, in the order given.")
    submission: dict[str, list[dict[str, list[list[int]]]]] = Field(
        default_factory=dict, description="Kaggle form {task_id: [{attempt_1, attempt_2}, ...]}."
    )


async def run_tasks(
    tasks: Iterable[Task],
    config: RunConfig,
    backend: Backend,
    sandbox: Verifier,
    recorder: Recorder,
    *,
    done: frozenset[str] | set[str] = frozenset(),
    progress: Callable[[TaskOutcome], None] | None = None,
    ctx_options: dict[str, Any] | None = None,
) -> RunSummary:
    """Solve every task not in ``done``; ``recorder.task_done`` is called as each finishes.

    ``ctx_options`` sets the other :class:`SolveContext` fields (backend retries and backoff).
    A failure to record (disk full) stops the whole run; everything else stops one task.
    """
    given = list(tasks)
    todo = [t for t in given if t.id not in done]
    ctx = SolveContext(config=config, backend=backend, sandbox=sandbox, recorder=recorder, **(ctx_options or {}))
    gate = asyncio.Semaphore(config.concurrency)
    outcomes: dict[str, TaskOutcome] = {}
    started = time.monotonic()

    async def one(task: Task) -> None:
        async with gate:
            outcome = await solve_task(task, ctx)
        outcomes[task.id] = outcome
        record = getattr(recorder, "task_done", None)
        if record is not None:
            record(task.id, outcome.model_dump(mode="json"))
        if progress is not None:
            progress(outcome)

    jobs = [asyncio.ensure_future(one(t)) for t in todo]
    try:
        await asyncio.gather(*jobs)
    finally:
        for j in jobs:
            j.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
    wall = time.monotonic() - started
    return summarize(todo, outcomes, wall, sandbox, skipped_done=len(given) - len(todo))


def summarize(
    tasks: list[Task], outcomes: dict[str, TaskOutcome], wall_s: float, sandbox: Any, *, skipped_done: int = 0
) -> RunSummary:
    ordered = [outcomes[t.id] for t in tasks if t.id in outcomes]
    scored = [o.score for o in ordered if o.score is not None]
    programs = sum(o.n_programs for o in ordered)
    completion = sum(o.completion_tokens for o in ordered)
    stats = getattr(sandbox, "stats", None)
    return RunSummary(
        tasks=len(ordered),
        skipped_done=skipped_done,
        solved_train=sum(o.solved_train for o in ordered),
        skipped=sum(o.status == "skipped" for o in ordered),
        errors=sum(o.status == "error" for o in ordered),
        score=sum(scored) / len(scored) if scored else None,
        scored_tasks=len(scored),
        n_programs=programs,
        prompt_tokens=sum(o.prompt_tokens for o in ordered),
        completion_tokens=completion,
        wall_s=round(wall_s, 3),
        programs_per_s=programs / wall_s if wall_s > 0 else 0.0,
        completion_tokens_per_s=completion / wall_s if wall_s > 0 else 0.0,
        sandbox=dict(stats) if isinstance(stats, dict) else {},
        outcomes=ordered,
        submission={o.task_id: o.attempts for o in ordered},
    )


# Collections of the youngest generation while a run goes on; Python's default is 700.
RUN_YOUNG_THRESHOLD = 50_000


@contextlib.contextmanager
def collector_for_a_run() -> Iterator[None]:
    """The garbage collector set for a long run on one event loop, as it was again afterwards.

    What exists when the run starts (tasks, config, an in-process model, imported modules)
    lives as long as the run, so it is frozen out of every collection; and the youngest
    generation is collected every 50,000 allocations instead of 700. With Python's defaults
    the collector took 0.18-0.25 s of the main process's CPU per 2,560 programs of
    `arcsynth bench pipeline` (about a tenth of it), 140 collections that walked the same
    long-lived objects again and again; set so, 0.03-0.08 s in one collection.
    """
    threshold = gc.get_threshold()
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(RUN_YOUNG_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
