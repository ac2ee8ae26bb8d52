"""The solve loop of one task: sample, verify, refine, vote.

Round 0 samples fresh programs; every later round refines earlier ones chosen by
the search strategy (:mod:`agent.strategies`). In REPL mode, conversations in
which the model runs code before it submits (:mod:`agent.repl`) follow, with
their share of the task's programs. Every program is verified as soon as
it is written. The search ends after ``budget.rounds`` rounds (and the REPL
attempts) or through an exception carrying the reason: enough passing programs,
a spent budget, a prompt that cannot fit, a backend that keeps failing. Whatever
the reason, the programs found so far vote on the two attempts per test input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

from pydantic import BaseModel, Field

from agent.backends.base import Backend
from agent.budget import StopSolving
from agent.config import RunConfig
from agent.rundir import RecordError
from agent.repl import run_repl_attempts
from agent.search import BackendFailed, TaskSearch
from agent.trace import AttemptsEvent, TaskError, TaskResult, TaskSkipped, TaskStart, VoteEvent
from agent.voting import score_attempts, vote
from arcsynth.task import Task
from prompts import PromptTooLong
from sandbox.cells import CellResult
from sandbox.verdict import CandidateVerdict


class Verifier(Protocol):
    """What the loop needs from the sandbox."""

    async def run(self, source: str, task: Task, check_test: bool = False) -> CandidateVerdict: ...

    async def run_cell(self, cells: list[str], grids: dict, *, max_output: int = 4000) -> CellResult: ...


class Recorder(Protocol):
    """What the loop needs from the run record."""

    def emit(self, event: Any) -> None: ...


@dataclass
class SolveContext:
    """Everything shared by the tasks of a run."""

    config: RunConfig
    backend: Backend
    sandbox: Verifier
    recorder: Recorder
    backend_retries: int = 1
    """Extra tries of a failed request before the task ends in a TaskError."""
    retry_backoff_s: float = 1.0


class TaskOutcome(BaseModel):
    """What one task's search produced; written as ``results/<task>.json``."""

    task_id: str
    status: str = Field(description="'done', 'skipped' (prompt too long) or 'error' (backend or sandbox failure).")
    solved_train: bool = Field(description="At least one program passed every train pair.")
    score: Optional[float] = Field(None, description="ARC Prize score of the attempts when test outputs are known.")
    n_programs: int = Field(description="Completions turned into programs (extraction failures and duplicates included).")
    n_passing: int = Field(description="Distinct programs passing every train pair.")
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    stop_reason: str
    attempts: list[dict[str, list[list[int]]]] = Field(description="Per test input {attempt_1, attempt_2} (Kaggle form).")
    sources: list[list[str]] = Field(default_factory=list, description="What filled each attempt.")


async def solve_task(task: Task, ctx: SolveContext) -> TaskOutcome:
    """Search programs for ``task`` within the configured budget and answer its test inputs."""
    search = TaskSearch(task, ctx)
    ctx.recorder.emit(TaskStart(task_id=task.id, n_train=len(task.train), n_test=len(task.test)))
    status = "done"
    try:
        # One after the other, so that which programs are duplicates, and when the task has
        # enough, never depends on timing (a recorded run replays exactly).
        reasons = [await run_rounds(search), await run_repl_attempts(search, search.repl_attempts)]
        stop_reason = "; ".join(r for r in reasons if r)
    except StopSolving as stop:
        stop_reason = stop.reason
    except PromptTooLong as e:
        status, stop_reason = "skipped", f"prompt too long: {e}"
        ctx.recorder.emit(TaskSkipped(task_id=task.id, reason=stop_reason))
    except RecordError:
        raise  # an unrecorded run must not go on
    except BackendFailed as e:
        status, stop_reason = "error", e.reason
        ctx.recorder.emit(TaskError(task_id=task.id, reason=stop_reason))
    except Exception as e:  # noqa: BLE001 - a sandbox or prompt bug ends this task, not the run
        status, stop_reason = "error", f"{type(e).__name__}: {e}"
        ctx.recorder.emit(TaskError(task_id=task.id, reason=stop_reason))
    return finish(search, status, stop_reason)


async def run_rounds(search: TaskSearch) -> str:
    """The sample/refine rounds; their stop reason."""
    rounds = search.ctx.config.budget.rounds
    try:
        for round_index in range(rounds):
            await search.run_round(search.plan_round(round_index))
    except StopSolving as e:
        # With REPL attempts to follow, the loop spending its own share ends the loop only;
        # task-wide reasons (enough passing, tokens, wall time) end them all.
        own = e.reason == "max_programs" or type(e) is StopSolving
        if not search.repl_attempts or not own:
            raise
        return "" if search.budget.max_programs == 0 else f"sample/refine loop: {e.reason}"
    return f"{rounds} rounds done"


def finish(search: TaskSearch, status: str, stop_reason: str) -> TaskOutcome:
    """Vote with whatever was found, record the answer and the task's totals."""
    task, emit = search.task, search.ctx.recorder.emit
    answer = vote(task, search.pool.behaviours)
    for index, groups in enumerate(answer.groups):
        emit(VoteEvent(task_id=task.id, test_index=index, groups=[g.model_dump() for g in groups]))
    emit(AttemptsEvent(task_id=task.id, attempts=answer.attempts, sources=answer.sources))
    outcome = TaskOutcome(
        task_id=task.id, status=status, solved_train=search.pool.passing_programs > 0,
        score=score_attempts(task, answer.attempts), n_programs=search.n_programs,
        n_passing=search.pool.passing_programs, prompt_tokens=search.prompt_tokens,
        completion_tokens=search.completion_tokens, wall_s=round(search.budget.elapsed(), 3),
        stop_reason=stop_reason, attempts=answer.attempts, sources=answer.sources,
    )
    emit(TaskResult(**outcome.model_dump(include=set(TaskResult.model_fields) - {"v", "t", "event"})))
    return outcome
