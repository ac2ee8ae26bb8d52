"""Submissions and their score by ARC Prize rules.

A submission is the Kaggle ``submission.json`` form: ``{task_id: [{"attempt_1": grid,
"attempt_2": grid}, ...]}``, one entry per test input in test order. A test output counts
as solved when either attempt matches it exactly; a task scores the fraction of its test
outputs solved; a set scores the mean over its tasks.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from arcsynth.datasets import Dataset
from arcsynth.grid import Grid, GridError, grid_to_list, grids_equal, parse_grid

__all__ = [
    "Attempts",
    "ScoreReport",
    "ScoringError",
    "Submission",
    "SubmissionError",
    "TaskScore",
    "read_submission",
    "score_submission",
    "submission_to_json",
    "write_submission",
]

ATTEMPT_KEYS = ("attempt_1", "attempt_2")


class SubmissionError(ValueError):
    """A submission is malformed. The message names the file, task id, test index and field."""

    def __init__(self, reason: str, *, path: str | None = None, task_id: str | None = None, test_index: int | None = None, field: str | None = None):
        self.reason = reason
        self.path = path
        self.task_id = task_id
        self.test_index = test_index
        self.field = field
        where = []
        if path:
            where.append(path)
        if task_id is not None:
            where.append(f"task {task_id}")
        if test_index is not None:
            where.append(f"test {test_index}")
        if field:
            where.append(field)
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


class ScoringError(ValueError):
    """A submission cannot be scored against a dataset (e.g. test outputs unknown)."""


class Attempts(BaseModel):
    """The two guesses for one test input."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    attempt_1: Grid
    """First guess (validated grid)."""
    attempt_2: Grid
    """Second guess (validated grid); may equal the first."""

    @field_validator("attempt_1", "attempt_2", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Grid:
        # GridError is a ValueError, which pydantic reports as a validation error.
        return parse_grid(v)

    @field_serializer("attempt_1", "attempt_2")
    def _as_lists(self, g: Grid) -> list[list[int]]:
        return grid_to_list(g)

    # pydantic's defaults would compare/hash the arrays element-wise and fail.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attempts):
            return NotImplemented
        return grids_equal(self.attempt_1, other.attempt_1) and grids_equal(self.attempt_2, other.attempt_2)

    def __hash__(self) -> int:
        return hash(tuple((g.shape, g.tobytes()) for g in (self.attempt_1, self.attempt_2)))

    def solves(self, expected: Grid) -> bool:
        return grids_equal(self.attempt_1, expected) or grids_equal(self.attempt_2, expected)


Submission = Dict[str, List[Attempts]]
"""task id -> one :class:`Attempts` per test input, in test order."""


def _parse_submission(obj: Any, path: str | None) -> Submission:
    if not isinstance(obj, dict):
        raise SubmissionError(f"a submission must be a JSON object {{task_id: [attempts, ...]}}, got {type(obj).__name__}", path=path)
    out: Submission = {}
    for task_id, entries in obj.items():
        if not isinstance(entries, list):
            raise SubmissionError(f"expected a list with one attempts object per test input, got {type(entries).__name__}", path=path, task_id=task_id)
        if not entries:
            raise SubmissionError("empty list: expected one attempts object per test input", path=path, task_id=task_id)
        attempts = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise SubmissionError(
                    f"expected an object with keys {', '.join(ATTEMPT_KEYS)}, got {type(entry).__name__}", path=path, task_id=task_id, test_index=i
                )
            extra = sorted(set(entry) - set(ATTEMPT_KEYS))
            if extra:
                raise SubmissionError(f"unexpected key(s) {', '.join(map(repr, extra))}; only attempt_1 and attempt_2 are allowed", path=path, task_id=task_id, test_index=i)
            grids = {}
            for key in ATTEMPT_KEYS:
                if key not in entry:
                    raise SubmissionError("missing", path=path, task_id=task_id, test_index=i, field=key)
                try:
                    grids[key] = parse_grid(entry[key])
                except GridError as e:
                    raise SubmissionError(f"not a valid grid: {e}", path=path, task_id=task_id, test_index=i, field=key) from None
            attempts.append(Attempts(**grids))
        out[task_id] = attempts
    return out


def read_submission(path: str | Path) -> Submission:
    """Read and strictly validate a ``submission.json``; errors name file, task, test index and field."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SubmissionError("file not found", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SubmissionError(f"cannot read: {getattr(e, 'strerror', None) or e}", path=str(p)) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", path=str(p)) from None
    return _parse_submission(obj, str(p))


def submission_to_json(submission: Mapping[str, Sequence[Attempts]]) -> dict[str, list[dict[str, list[list[int]]]]]:
    """The Kaggle JSON form of a submission."""
    return {
        task_id: [{"attempt_1": grid_to_list(a.attempt_1), "attempt_2": grid_to_list(a.attempt_2)} for a in attempts]
        for task_id, attempts in submission.items()
    }


def write_submission(path: str | Path, submission: Mapping[str, Sequence[Attempts]]) -> Path:
    """Write ``submission.json`` atomically: a reader sees the old file or the new one, never half."""
    p = Path(path).expanduser()
    data = json.dumps(submission_to_json(submission), separators=(",", ":"))
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


class TaskScore(BaseModel):
    """One task's result."""

    task_id: str
    score: float
    """Fraction of the task's test outputs solved (0..1)."""
    solved: List[bool]
    """Per test input: whether either attempt matched."""
    missing: bool = False
    """True when the submission has no entry for this task (scored 0)."""

    @property
    def n_test(self) -> int:
        return len(self.solved)


class ScoreReport(BaseModel):
    """A submission scored against a dataset."""

    dataset: str
    tasks: List[TaskScore]
    """One entry per dataset task, in dataset order."""
    total: float
    """Sum of task scores (the number of tasks solved, counting partial tasks by fraction)."""
    score: float
    """Mean task score over the dataset (the ARC Prize score), 0..1."""
    n_tasks: int
    n_tasks_solved: int
    """Tasks with every test output solved."""
    n_test_outputs: int
    n_test_outputs_solved: int
    missing: List[str] = Field(default_factory=list)
    """Dataset tasks absent from the submission (scored 0)."""
    unknown: List[str] = Field(default_factory=list)
    """Submission tasks not in the dataset (ignored; worth a warning)."""


def score_submission(submission: Mapping[str, Sequence[Attempts]], dataset: Dataset) -> ScoreReport:
    """Score by ARC Prize rules over every task of ``dataset``.

    Tasks missing from the submission score 0 and are listed; submission tasks unknown to
    the dataset are listed in ``unknown`` and ignored, since scoring a full submission
    against a subset is normal. Raises :class:`ScoringError` if a dataset task's test
    outputs are unknown or a task's attempts do not match its number of test inputs.
    """
    no_outputs = [t.id for t in dataset if not t.test_outputs_known]
    if no_outputs:
        shown = ", ".join(no_outputs[:5]) + (f" and {len(no_outputs) - 5} more" if len(no_outputs) > 5 else "")
        raise ScoringError(
            f"dataset {dataset.name}: test outputs unknown for task(s) {shown}; "
            "give a solutions file (Kaggle *_solutions.json) to score against it"
        )
    scores: list[TaskScore] = []
    missing: list[str] = []
    for task in dataset:
        attempts = submission.get(task.id)
        if attempts is None:
            missing.append(task.id)
            scores.append(TaskScore(task_id=task.id, score=0.0, solved=[False] * len(task.test), missing=True))
            continue
        if len(attempts) != len(task.test):
            # Kaggle rejects such a submission outright; guessing an alignment would mis-score.
            raise ScoringError(
                f"task {task.id}: the submission has {len(attempts)} attempts entr{'y' if len(attempts) == 1 else 'ies'} "
                f"but the task has {len(task.test)} test input(s)"
            )
        solved = [a.solves(p.output) for a, p in zip(attempts, task.test)]
        scores.append(TaskScore(task_id=task.id, score=sum(solved) / len(solved), solved=solved))
    total = sum(s.score for s in scores)
    return ScoreReport(
        dataset=dataset.name,
        tasks=scores,
        total=total,
        score=total / len(scores) if scores else 0.0,
        n_tasks=len(scores),
        n_tasks_solved=sum(1 for s in scores if all(s.solved)),
        n_test_outputs=sum(s.n_test for s in scores),
        n_test_outputs_solved=sum(sum(s.solved) for s in scores),
        missing=missing,
        unknown=[t for t in submission if t not in dataset],
    )
