"""Search strategies on hand-made populations: the weights, draws and filters each one documents."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from agent.candidate import Behaviour, Candidate
from agent.selection import select_parents
from agent.strategies import EvolveConfig, MixConfig, RexConfig, pool_parents
from agent.strategies.evolve import fitness
from sandbox.verdict import CandidateVerdict, PairVerdict

SHORT = "def transform(grid):\n    return grid\n"


def behaviour(pid: str, passes: list[str], accuracy: float | None = None, *, request: int = 0, order: int = 0,
              source: str = SHORT) -> Behaviour:
    """A program with one verdict per train pair: 'p' pass, 'w' wrong, 'e' error."""
    train = []
    for k, s in enumerate(passes):
        status = {"p": "pass", "w": "wrong", "e": "error"}[s]
        acc = 1.0 if s == "p" else (accuracy if accuracy is not None and s == "w" else 0.0)
        train.append(PairVerdict(status=status, output=None if s == "e" else [[k]], shape_match=s != "e",
                                 cell_accuracy=None if s == "e" else acc))
    verdict = CandidateVerdict(train=train, test=[], isolation=[])
    return Behaviour(Candidate(pid, (1, request, order), source, pid, verdict))


def population() -> list[Behaviour]:
    return [behaviour(f"b{i}", ["w", "w", "w"], accuracy=a, order=i) for i, a in enumerate([0.1, 0.3, 0.5, 0.7, 0.9])]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_evolution_weights_are_a_sigmoid_around_a_high_percentile_times_a_novelty_bonus():
    cfg = EvolveConfig()
    strategy = cfg.build()
    pop = population()
    pop[4].times_refined = 3
    fit, weights, midpoint = strategy.weights(pop)
    assert fit == pytest.approx([0.9 * b.train_accuracy + 0.1 * (1 / (1 + 2 / 30)) for b in pop])
    # The midpoint is the 75th percentile of the fitness: above it weighs > 0.5, below < 0.5.
    assert midpoint == pytest.approx(fit[3])
    for f, w, b in zip(fit, weights, pop):
        assert w == pytest.approx(sigmoid(10 * (f - midpoint)) / (1 + b.times_refined))
    assert weights[2] < 0.5 < sigmoid(10 * (fit[4] - midpoint))
    # Without the novelty bonus, refining a program often does not lower its weight.
    _, plain, _ = EvolveConfig(novelty=False).build().weights(pop)
    assert plain[4] == pytest.approx(sigmoid(10 * (fit[4] - midpoint)))


def test_simplicity_breaks_ties_between_equally_correct_programs():
    long = SHORT + "".join(f"    x{i} = {i}\n" for i in range(60))
    a, b = behaviour("short", ["w"], 0.5), behaviour("long", ["w"], 0.5, source=long)
    cfg = EvolveConfig()
    assert fitness(a, cfg) > fitness(b, cfg)
    assert fitness(a, EvolveConfig(correctness_weight=1.0)) == fitness(b, EvolveConfig(correctness_weight=1.0))


def test_parents_are_drawn_with_the_probability_the_trace_records():
    strategy = EvolveConfig(crossover_rate=0.0, novelty=False).build()
    counts: Counter[str] = Counter()
    recorded: dict[str, float] = {}
    for seed in range(3000):
        choice = strategy.choose(population(), k=1, rng=random.Random(seed), request_index=0)
        pick = choice.picks[0]
        counts[pick.behaviour.representative.program_id] += 1
        recorded[pick.behaviour.representative.program_id] = pick.probability
    assert set(recorded) <= {f"b{i}" for i in range(5)} and counts["b4"] > counts["b2"] > counts["b0"]
    for pid, p in recorded.items():
        assert abs(counts[pid] / 3000 - p) < 0.03, (pid, counts[pid] / 3000, p)


def test_crossover_happens_at_its_rate_once_the_population_is_large_enough():
    strategy = EvolveConfig(crossover_rate=0.25).build()
    moves = Counter()
    for seed in range(2000):
        choice = strategy.choose(population(), k=1, rng=random.Random(seed), request_index=0)
        moves[choice.move] += 1
        if choice.move == "crossover":
            ids = [p.behaviour.representative.program_id for p in choice.picks]
            assert len(ids) == 2 and len(set(ids)) == 2
        else:
            assert len(choice.picks) == 1
    assert 0.21 < moves["crossover"] / 2000 < 0.29
    two = population()[:2]
    assert all(strategy.choose(two, k=1, rng=random.Random(s), request_index=0).move == "refine" for s in range(300))


def test_a_batch_of_failure_cases_is_drawn_from_the_parents_failures():
    pop = [behaviour("a", ["p", "w", "w", "w", "w", "p"], 0.5), behaviour("b", ["w", "p", "p", "p", "p", "p"], 0.4)]
    strategy = EvolveConfig(failures_shown=2, crossover_rate=0.0).build()
    seen = set()
    for seed in range(200):
        choice = strategy.choose(pop, k=1, rng=random.Random(seed), request_index=0)
        failing = {i for i, v in enumerate(choice.picks[0].behaviour.representative.verdict.train) if v.status != "pass"}
        if len(failing) > 2:
            assert len(choice.focus) == 2 and set(choice.focus) <= failing
            seen.add(tuple(choice.focus))
        else:
            assert choice.focus is None  # every failure fits in the batch
        assert choice.reject_non_fixing
    assert len(seen) > 3  # the batch is drawn, not always the same pairs
    assert EvolveConfig(failures_shown=0).build().choose(pop, k=1, rng=random.Random(0), request_index=0).focus is None


def test_pooling_adds_the_parent_that_solves_the_pairs_the_first_does_not():
    first = behaviour("first", ["p", "w", "w"], 0.6)
    same = behaviour("same", ["p", "w", "w"], 0.9)  # better score, solves nothing new
    other = behaviour("other", ["w", "p", "w"], 0.2)
    third = behaviour("third", ["w", "w", "p"], 0.1)
    chosen = pool_parents([first, same, other, third], 3)
    assert [(b.representative.program_id, via) for b, via in chosen] == [("first", "selection"), ("other", "pooling"), ("third", "pooling")]
    # Nothing left to add: the strategy's own order fills the prompt.
    assert [b.representative.program_id for b, _ in pool_parents([first, same, other], 4)] == ["first", "other", "same"]


def test_islands_keep_their_own_lines_of_descent():
    pop = [behaviour(f"i{q}", ["w"], 0.5, request=q) for q in range(4)]
    strategy = RexConfig(islands=4).build()
    for q in range(8):
        choice = strategy.choose(pop, k=1, rng=random.Random(q), request_index=q)
        assert choice.island == q % 4 and choice.picks[0].behaviour.representative.program_id == f"i{q % 4}"
    # An island with no program borrows from the others.
    assert RexConfig(islands=8).build().choose(pop, k=1, rng=random.Random(0), request_index=6).population == 4


def test_programs_that_crash_are_not_refined_when_so_configured():
    pop = [behaviour("crash", ["e", "p"], 0.0), behaviour("wrong", ["w", "w"], 0.1)]
    for cfg in (RexConfig(refine_errors=False, c=0.0), EvolveConfig(refine_errors=False)):
        for seed in range(50):
            choice = cfg.build().choose(pop, k=2, rng=random.Random(seed), request_index=0)
            assert [p.behaviour.representative.program_id for p in choice.picks] == ["wrong"]
    assert RexConfig(refine_errors=False).build().choose(pop[:1], k=1, rng=random.Random(0), request_index=0) is None


def test_rex_with_default_knobs_chooses_exactly_as_before():
    for seed in range(30):
        a, b = population(), population()
        old = [x.representative.program_id for x in select_parents(a, 2, random.Random(seed), c=20.0)]
        choice = RexConfig().build().choose(b, k=2, rng=random.Random(seed), request_index=seed)
        assert [p.behaviour.representative.program_id for p in choice.picks] == old
        assert [x.times_refined for x in a] == [x.times_refined for x in b]


@pytest.mark.parametrize("share, expected", [(0.5, "RERERERE"), (0.25, "RRRERRRE"), (0.0, "RRRRRRRR"), (1.0, "EEEEEEEE")])
def test_mix_deals_requests_in_its_share(share, expected):
    strategy = MixConfig(evolve_share=share).build()
    dealt = "".join("E" if strategy.part_for(q) is strategy.evolve else "R" for q in range(8))
    assert dealt == expected
    choice = strategy.choose(population(), k=1, rng=random.Random(0), request_index=1)
    assert choice.strategy == ("evolve" if expected[1] == "E" else "rex")
