"""Voting: grouping, weighting, near-miss fill, exactly two attempts, scoring.

Verdicts are built by hand here (the sandbox is not under test); the task is real
ARC data: arc1 train 3c9b0459 (rotate by 180 degrees), one test input.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.candidate import CandidatePool, Candidate
from agent.voting import score_attempts, vote
from arcsynth.datasets import load_dataset
from arcsynth.grid import grid_to_list
from arcsynth.task import task_from_json
from sandbox.verdict import CandidateVerdict, PairVerdict


@pytest.fixture(scope="module")
def task():
    return load_dataset("arc1:train").get("3c9b0459")


def program(task, pid: str, order: int, fn, *, train_ok: bool = True, test_fn=None) -> Candidate:
    """A candidate whose outputs are ``fn`` applied to the real grids (``test_fn`` on test
    inputs when given); train verdicts computed honestly against the real outputs."""
    train = []
    for pair in task.train:
        out = fn(pair.input) if train_ok else np.zeros_like(pair.output)
        same_shape = out.shape == pair.output.shape
        acc = float((out == pair.output).mean()) if same_shape else 0.0
        train.append(PairVerdict(status="pass" if acc == 1.0 else "wrong", output=grid_to_list(out), shape_match=same_shape, cell_accuracy=acc))
    test = [PairVerdict(status="unchecked", output=grid_to_list((test_fn or fn)(p.input))) for p in task.test]
    return Candidate(pid, (0, order, 0), f"# {pid}", pid, CandidateVerdict(train=train, test=test, isolation=[]))


rot180 = lambda g: np.rot90(g, 2)
flip = lambda g: np.fliplr(g)
ident = lambda g: g.copy()


def test_passing_groups_outvote_and_behaviour_duplicates_count_once(task):
    pool = CandidatePool()
    pool.add(program(task, "a", 0, rot180))
    pool.add(program(task, "a2", 1, rot180))  # same behaviour: one vote, two programs
    pool.add(program(task, "wrong", 2, flip, train_ok=False))
    answer = vote(task, pool.behaviours)
    groups = answer.groups[0]
    assert groups[0].passing and groups[0].program_ids == ["a", "a2"] and groups[0].behaviours == 1
    assert groups[0].weight == pytest.approx(1 + 1000.0)
    assert answer.attempts[0]["attempt_1"] == grid_to_list(rot180(task.test[0].input))
    assert score_attempts(task, answer.attempts) == 1.0


def test_more_votes_win_among_passing_groups(task):
    # Passing programs agree on every train output, so they can only differ on the test input.
    pool = CandidatePool()
    pool.add(program(task, "lone", 0, rot180, test_fn=flip))
    pool.add(program(task, "r1", 1, rot180))
    pool.add(program(task, "r2", 2, rot180))  # behaviour duplicate of r1: more programs, same behaviour
    groups = vote(task, pool.behaviours).groups[0]
    assert [g.program_ids for g in groups] == [["r1", "r2"], ["lone"]]
    assert groups[0].weight == groups[1].weight  # one behaviour each; programs break the tie


def test_identical_behaviours_merge_and_passing_ranks_first(task):
    pool = CandidatePool()
    pool.add(program(task, "x", 0, flip))
    pool.add(program(task, "y", 1, lambda g: np.flipud(np.fliplr(np.flipud(g)))))  # same as flip everywhere
    assert len(pool.behaviours) == 1  # identical behaviour merged
    pool.add(program(task, "rot", 2, rot180))
    groups = vote(task, pool.behaviours).groups[0]
    assert [g.passing for g in groups] == [True, False]  # rot180 passes; flip does not
    assert groups[0].program_ids == ["rot"]


def test_near_miss_fills_the_free_slot_ranked_by_train_accuracy(task):
    pool = CandidatePool()
    pool.add(program(task, "pass", 0, rot180))
    pool.add(program(task, "zeros", 1, ident, train_ok=False))  # poor accuracy
    pool.add(program(task, "flip", 2, flip))  # closer to the truth than all zeros
    answer = vote(task, pool.behaviours)
    a = answer.attempts[0]
    assert a["attempt_1"] == grid_to_list(rot180(task.test[0].input))
    assert a["attempt_2"] == grid_to_list(flip(task.test[0].input))
    assert "passing" in answer.sources[0][0] and "near-miss" in answer.sources[0][1] and "flip" in answer.sources[0][1]


def test_always_exactly_two_attempts_with_documented_defaults(task):
    empty = vote(task, [])
    assert len(empty.attempts) == len(task.test)
    test_input = grid_to_list(task.test[0].input)
    assert empty.attempts[0] == {"attempt_1": test_input, "attempt_2": test_input}
    assert empty.sources[0] == ["default: the test input", "default: attempt_1 repeated"]

    pool = CandidatePool()
    pool.add(program(task, "only", 0, rot180))
    one = vote(task, pool.behaviours)
    assert one.attempts[0]["attempt_1"] == grid_to_list(rot180(task.test[0].input))
    assert one.attempts[0]["attempt_2"] == test_input
    assert set(one.attempts[0]) == {"attempt_1", "attempt_2"}


def test_programs_without_a_test_output_do_not_vote(task):
    pool = CandidatePool()
    c = program(task, "crash", 0, rot180)
    c.verdict.test[0] = PairVerdict(status="error", error_type="IndexError", error="boom")
    pool.add(c)
    answer = vote(task, pool.behaviours)
    assert answer.groups[0] == []
    assert answer.sources[0][0] == "default: the test input"


def test_score_counts_either_attempt_and_is_none_without_answers(task):
    right = grid_to_list(task.test[0].output)
    wrong = grid_to_list(task.test[0].input)
    assert score_attempts(task, [{"attempt_1": wrong, "attempt_2": right}]) == 1.0
    assert score_attempts(task, [{"attempt_1": wrong, "attempt_2": wrong}]) == 0.0
    hidden = task_from_json({"train": [p.to_json() for p in task.train], "test": [{"input": wrong}]}, "hidden")
    assert score_attempts(hidden, [{"attempt_1": wrong, "attempt_2": wrong}]) is None


def test_votes_do_not_depend_on_the_order_verifications_finish(task):
    # Verification finishes in whatever order the sandbox pool gets to it; a run
    # and its replay must still record the same groups and the same sources.
    programs = [
        program(task, "p0", 0, rot180),
        program(task, "p1", 1, lambda g: np.flipud(np.fliplr(g))),  # same behaviour as p0
        program(task, "p2", 2, rot180, test_fn=flip),
        program(task, "p3", 3, rot180),
        program(task, "p4", 4, flip, train_ok=False),
        program(task, "p5", 5, flip, train_ok=False),
    ]
    answers = []
    for arrival in ([0, 1, 2, 3, 4, 5], [5, 3, 1, 4, 2, 0], [3, 0, 5, 2, 1, 4]):
        pool = CandidatePool()
        for i in arrival:
            pool.add(programs[i])
        assert [b.program_ids for b in pool.behaviours] == [["p0", "p1", "p3"], ["p2"], ["p4", "p5"]]
        answers.append(vote(task, pool.behaviours))
    assert answers[0].groups[0][0].program_ids == ["p0", "p1", "p3"]
    assert "first p0" in answers[0].sources[0][0]
    assert all(a == answers[0] for a in answers[1:])
