"""The run trace: a versioned JSONL file of typed events, one per line.

Every event is written and flushed as it happens, so a killed run loses at most
the event in flight; a torn last line is skipped on read. The field ``event`` is
the tag of the union; ``v`` is the format version. Field order is the file
format: add fields at the end, with defaults, and bump TRACE_VERSION when a
reader of the old version would misread the new one.

A resumed run appends to the same file (a new RunStart with ``resumed=True``) and
redoes the tasks that had no result, so a task can have several attempts, each
starting with its TaskStart. Readers must take the LAST attempt of each task
(:func:`last_attempts`); the earlier ones are what a killed process left behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

TRACE_VERSION = 1


class _Event(BaseModel):
    v: int = TRACE_VERSION
    t: float = Field(default_factory=time.time, description="Unix time the event was recorded.")


class RunStart(_Event):
    event: Literal["run_start"] = "run_start"
    run_id: str
    config_hash: str
    resumed: bool = False


class TaskStart(_Event):
    event: Literal["task_start"] = "task_start"
    task_id: str
    n_train: int
    n_test: int


class PromptEvent(_Event):
    event: Literal["prompt"] = "prompt"
    task_id: str
    request_id: str = Field(description="Unique within the run: '<task>/r<round>/q<index>'.")
    round: int
    kind: Literal["first", "refine"]
    messages: list[dict[str, str]]
    prompt_tokens: int
    sampling: dict[str, Any] = Field(description="SamplingParams of the request, seed included.")
    parent_ids: list[str] = Field(default_factory=list, description="Programs shown as parents (refinement).")
    shrink_steps: list[str] = Field(default_factory=list)


class CompletionEvent(_Event):
    event: Literal["completion"] = "completion"
    task_id: str
    request_id: str
    index: int = Field(description="Position among the n completions of the request.")
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    latency_s: float


class ProgramEvent(_Event):
    event: Literal["program"] = "program"
    task_id: str
    program_id: str = Field(description="'<request_id>/c<index>'.")
    round: int
    status: Literal["ok", "no_code", "no_transform", "syntax_error"]
    detail: str = ""
    source: str | None = None
    program_hash: str | None = None
    duplicate_of: str | None = Field(None, description="An earlier program with the same normalised source; not re-run.")
    parent_ids: list[str] = Field(default_factory=list)


class VerdictEvent(_Event):
    event: Literal["verdict"] = "verdict"
    task_id: str
    program_id: str
    all_train_pass: bool
    pairs_passed: int
    train_accuracy: float
    train: list[dict[str, Any]] = Field(description="PairVerdict per train pair.")
    test: list[dict[str, Any]] = Field(description="PairVerdict per test input (status 'unchecked' when answers are hidden).")
    isolation: list[str]
    rechecked: bool = False
    behaviour_duplicate_of: str | None = Field(None, description="An earlier program with identical outputs on every input.")


class VoteEvent(_Event):
    event: Literal["vote"] = "vote"
    task_id: str
    test_index: int
    groups: list[dict[str, Any]] = Field(description="[{output, program_ids, weight, passing}] best first.")


class AttemptsEvent(_Event):
    event: Literal["attempts"] = "attempts"
    task_id: str
    attempts: list[dict[str, Any]] = Field(description="Per test input: {attempt_1, attempt_2} grids (Kaggle form).")
    sources: list[list[str]] = Field(default_factory=list, description="Per test input, what filled each attempt.")


class TaskSkipped(_Event):
    event: Literal["task_skipped"] = "task_skipped"
    task_id: str
    reason: str


class TaskError(_Event):
    event: Literal["task_error"] = "task_error"
    task_id: str
    reason: str


class TaskResult(_Event):
    event: Literal["task_result"] = "task_result"
    task_id: str
    solved_train: bool = Field(description="At least one program passed every train pair.")
    score: float | None = Field(None, description="Pass@2 score when test answers are known.")
    n_programs: int
    n_passing: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    stop_reason: str


class TokenCount(_Event):
    event: Literal["token_count"] = "token_count"
    key: str = Field(description="SHA-256 of the prompt messages (agent.backends.replay.messages_digest).")
    tokens: int = Field(description="What the backend's count_tokens answered.")


class RunEnd(_Event):
    event: Literal["run_end"] = "run_end"
    summary: dict[str, Any]


Event = Annotated[
    Union[
        RunStart, TaskStart, PromptEvent, CompletionEvent, ProgramEvent, VerdictEvent,
        VoteEvent, AttemptsEvent, TaskSkipped, TaskError, TaskResult, RunEnd, TokenCount,
    ],
    Field(discriminator="event"),
]
_EVENT = TypeAdapter(Event)


class TraceWriter:
    """Appends events to a JSONL file, one ``write`` call per event.

    Opened with ``O_APPEND`` so a resumed run continues the same file. Each event goes
    to the kernel as it is written (no Python buffer), which is what survives
    ``kill -9``; ``fsync=True`` also survives a power cut. A failed write (disk full)
    is cut back to the last whole line before the error is raised, so the file never
    holds half an event written by this process.
    """

    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = Path(path)
        self._fsync = fsync
        self._repair_torn_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _repair_torn_tail(self) -> None:
        # A line torn by a kill would glue itself to the next event; end it first.
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def write(self, event: _Event) -> None:
        data = (event.model_dump_json() + "\n").encode("utf-8")
        size = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self._fsync:
                os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                pass  # the reader skips a torn last line anyway
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trace(path: Path) -> Iterator[Any]:
    """Yield events in order; skip a torn or unparsable line (a kill mid-write)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield _EVENT.validate_python(json.loads(line))
            except (json.JSONDecodeError, ValidationError):
                continue


def last_attempts(events: Iterable[Any]) -> dict[str, list[Any]]:
    """Each task's events from its LAST attempt, in order.

    A resumed run redoes the tasks that had no result, so the trace can hold several
    attempts of one task, each starting with a :class:`TaskStart`. Readers must use the
    last one: earlier attempts are what a killed process left behind. Events that carry
    no task id (RunStart, RunEnd) are not included.
    """
    by_task: dict[str, list[Any]] = {}
    for ev in events:
        tid = getattr(ev, "task_id", None)
        if tid is None:
            continue
        if isinstance(ev, TaskStart) or tid not in by_task:
            by_task[tid] = []
        by_task[tid].append(ev)
    return by_task
