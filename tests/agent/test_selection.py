"""Parent selection: REX Thompson sampling."""

from __future__ import annotations

import random

from agent.candidate import Behaviour, Candidate
from agent.selection import select_parents, thompson_draw
from sandbox.verdict import CandidateVerdict, PairVerdict


def behaviour(pid: str, accuracy: float, order: int = 0) -> Behaviour:
    """A behaviour whose single train pair has the given cell accuracy."""
    v = PairVerdict(status="pass" if accuracy == 1.0 else "wrong", output=[[order % 10]], shape_match=True, cell_accuracy=accuracy)
    verdict = CandidateVerdict(train=[v], test=[], isolation=[])
    return Behaviour(Candidate(pid, (1, order, 0), "def transform(g): return g", pid, verdict))


def pool() -> list[Behaviour]:
    return [behaviour("good", 0.9, 0), behaviour("mid", 0.5, 1), behaviour("bad", 0.1, 2)]


def test_same_seed_same_choice_and_different_seeds_differ():
    close = lambda: [behaviour("a", 0.6, 0), behaviour("b", 0.5, 1), behaviour("c", 0.4, 2)]
    picks = lambda seed: [b.representative.program_id for b in select_parents(close(), 2, random.Random(seed))]
    assert picks(7) == picks(7)
    assert len({tuple(picks(s)) for s in range(40)}) > 1  # not a fixed ranking: it explores


def test_prefers_more_accurate_programs_statistically():
    counts = {"good": 0, "mid": 0, "bad": 0}
    rng = random.Random(0)
    for _ in range(2000):
        fresh = pool()  # times_refined 0 every time: only accuracy differs
        counts[select_parents(fresh, 1, rng)[0].representative.program_id] += 1
    assert counts["good"] > counts["mid"] > counts["bad"]
    assert counts["good"] > 1400


def test_refining_a_program_lowers_its_chance_again():
    rng = random.Random(1)
    fresh = lambda: thompson_draw(0.9, 0, rng)
    tired = lambda: thompson_draw(0.9, 30, rng)
    assert sum(fresh() for _ in range(2000)) > sum(tired() for _ in range(2000)) * 1.5


def test_counts_refinements_and_picks_distinct_parents():
    behaviours = pool()
    chosen = select_parents(behaviours, 2, random.Random(3))
    assert len({id(b) for b in chosen}) == 2
    assert sorted(b.times_refined for b in behaviours) == [0, 1, 1]
    assert select_parents(behaviours, 5, random.Random(3)).__len__() == 3
    assert select_parents([], 2, random.Random(3)) == []


def test_larger_c_trusts_accuracy_more():
    def share_of_best(c: float) -> float:
        rng = random.Random(5)
        wins = sum(select_parents(pool(), 1, rng, c=c)[0].representative.program_id == "good" for _ in range(1000))
        return wins / 1000

    assert share_of_best(100.0) > share_of_best(1.0)
