"""The two attempts per test input: vote among passing programs, fill from near misses.

For each test input the outputs of the behaviours (see :mod:`agent.candidate`)
are grouped by identical grid.

* Groups of train-passing behaviours are ranked by SOAR's weight
  ``behaviours + 1000 x mean train accuracy`` (the accuracy term only matters
  if passing is ever relaxed; among passing groups it is constant), ties broken
  by the number of programs behind the group, then by first appearance.
* Free slots are filled from near misses: groups of non-passing behaviours,
  ranked by best train accuracy, then whether every train output had the right
  shape, then train pairs passed, then votes.
* If still short, the test input itself is the default answer (many ARC outputs
  resemble their input; it is a valid grid of the allowed size), and a lone
  attempt is repeated so there are always exactly two.
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel, Field

from arcsynth.grid import grid_to_list
from arcsynth.scoring import Attempts
from arcsynth.task import Task
from agent.candidate import Behaviour, GridKey

PASS_WEIGHT = 1000.0


class VoteGroup(BaseModel):
    """Behaviours that produced the same grid for one test input."""

    output: list[list[int]]
    program_ids: list[str] = Field(description="Every program (behaviour duplicates included) giving this grid.")
    behaviours: int = Field(description="Distinct behaviours in the group: the votes.")
    weight: float = Field(description="behaviours + 1000 x mean train accuracy (passing groups).")
    passing: bool = Field(description="The group's programs pass every train pair.")
    train_accuracy: float = Field(description="Best train accuracy in the group.")
    shape_match: bool = Field(description="Some program of the group got every train output shape right.")
    pairs_passed: int = Field(description="Most train pairs passed by a program of the group.")


class TaskAnswer(BaseModel):
    """The answer to one task: two grids per test input and how they were chosen."""

    attempts: list[dict[str, list[list[int]]]] = Field(description="Per test input {attempt_1, attempt_2} (Kaggle form).")
    sources: list[list[str]] = Field(description="Per test input, what filled attempt_1 and attempt_2.")
    groups: list[list[VoteGroup]] = Field(description="Per test input: passing groups best first, then near misses.")


def _group(behaviours: Sequence[Behaviour], index: int, passing: bool) -> list[VoteGroup]:
    by_output: dict[GridKey, list[Behaviour]] = {}
    for b in behaviours:
        key = b.test_output(index)
        if key is not None and b.passing == passing:
            by_output.setdefault(key, []).append(b)
    groups = []
    for key, members in by_output.items():
        accs = [m.train_accuracy for m in members]
        groups.append(
            VoteGroup(
                output=[list(row) for row in key],
                # Program order, not arrival order: the same in a run and its replay.
                program_ids=[c.program_id for c in sorted((c for m in members for c in m.members), key=lambda c: c.order)],
                behaviours=len(members),
                weight=len(members) + PASS_WEIGHT * sum(accs) / len(accs),
                passing=passing,
                train_accuracy=max(accs),
                shape_match=any(m.representative.verdict.shape_match for m in members),
                pairs_passed=max(m.representative.verdict.pairs_passed for m in members),
            )
        )
    return groups


def rank_groups(behaviours: Sequence[Behaviour], index: int) -> list[VoteGroup]:
    """All groups for test input ``index``: passing best first, then near misses best first."""
    # sorted() is stable, so equal keys keep first-appearance order: deterministic.
    passing = sorted(_group(behaviours, index, True), key=lambda g: (-g.weight, -len(g.program_ids)))
    near = sorted(
        _group(behaviours, index, False),
        key=lambda g: (-g.train_accuracy, not g.shape_match, -g.pairs_passed, -g.behaviours, -len(g.program_ids)),
    )
    return passing + near


def vote(task: Task, behaviours: Sequence[Behaviour]) -> TaskAnswer:
    """Exactly two attempts for every test input of ``task``."""
    attempts, sources, all_groups = [], [], []
    for index, pair in enumerate(task.test):
        groups = rank_groups(behaviours, index)
        picked: list[tuple[list[list[int]], str]] = []
        for rank, g in enumerate(groups):
            if len(picked) == 2:
                break
            kind = "passing" if g.passing else "near-miss"
            picked.append((g.output, f"group {rank} ({kind}, {len(g.program_ids)} programs, first {g.program_ids[0]})"))
        if len(picked) < 2:
            default = grid_to_list(pair.input)
            if all(out != default for out, _ in picked):
                picked.append((default, "default: the test input"))
        if len(picked) < 2:
            picked.append((picked[0][0], "default: attempt_1 repeated"))
        attempts.append({"attempt_1": picked[0][0], "attempt_2": picked[1][0]})
        sources.append([picked[0][1], picked[1][1]])
        all_groups.append(groups)
    return TaskAnswer(attempts=attempts, sources=sources, groups=all_groups)


def score_attempts(task: Task, attempts: Sequence[dict[str, Any]]) -> float | None:
    """ARC Prize score: the fraction of test inputs where either attempt is exactly right.

    ``None`` when the task's test outputs are not known.
    """
    if not task.test_outputs_known:
        return None
    solved = sum(Attempts(**slot).solves(pair.output) for pair, slot in zip(task.test, attempts))
    return solved / len(task.test)
