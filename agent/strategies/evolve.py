"""``evolve``: a population of programs evolved as in Imbue's code evolution (2026).

Per refinement request:

1. **Fitness** of every program in the population: ``correctness_weight x train
   accuracy + (1 - correctness_weight) x simplicity``, where simplicity is
   ``1 / (1 + code lines / simplicity_lines)`` (code lines: not blank, not only a
   comment). Imbue mixes 0.9 correctness, 0.07 LLM-judged transfer and 0.03
   simplicity; no judge here, so its share goes to simplicity by default.
2. **Selection weight** ``sigmoid(sharpness x (fitness - midpoint))`` with the
   midpoint at the ``midpoint_percentile`` of the population's fitness, times a
   **novelty bonus** ``1 / (1 + times the program was a parent)``, so programs
   with few children get their turn.
3. **Crossover** with probability ``crossover_rate`` once the population has
   ``crossover_min_population`` programs: two parents drawn by weight (without
   replacement) and a prompt asking to combine them; otherwise a mutation of
   ``prompt.parents_per_prompt`` parents drawn by weight.
4. **A batch of failure cases**: the prompt details up to ``failures_shown``
   train pairs that the parents fail (drawn at random); the other pairs get one
   line each.
5. **Rejection**: a child that passes none of those shown failures is never a
   parent (``reject_non_fixing``); it is still verified and still votes.

Stopping when the train-perfect programs agree is ``budget.stop_on_agreement``.
"""

from __future__ import annotations

import math
import random
from typing import Literal, Optional, Sequence

import numpy as np
from pydantic import Field

from agent.candidate import Behaviour
from agent.strategies.base import CommonKnobs, ParentChoice, Pick, eligible, failed_pairs, pool_parents


class EvolveConfig(CommonKnobs):
    """Imbue-style evolution: sigmoid-weighted parents with a novelty bonus, failure batches, rejection, crossover."""

    kind: Literal["evolve"] = Field("evolve", description="Strategy name.")
    sharpness: float = Field(10.0, gt=0, allow_inf_nan=False, description="Steepness of the sigmoid over fitness (Imbue: 10).")
    midpoint_percentile: float = Field(
        75.0, ge=0, le=100,
        description="The sigmoid's midpoint is this percentile of the population's fitness: programs above it "
        "weigh more than 0.5, programs below less.",
    )
    novelty: bool = Field(True, description="Multiply each weight by 1 / (1 + times the program was a parent).")
    correctness_weight: float = Field(
        0.9, ge=0, le=1, description="Share of train accuracy in fitness; the rest is simplicity.")
    simplicity_lines: float = Field(
        30.0, gt=0, description="Code lines at which simplicity is 0.5 (simplicity = 1 / (1 + lines / this)).")
    failures_shown: int = Field(
        3, ge=0, description="Failing train pairs detailed in each prompt (a batch drawn at random); 0 = all.")
    reject_non_fixing: bool = Field(
        True, description="A child that passes none of the failures its prompt showed is never a parent (it still votes).")
    crossover_rate: float = Field(0.25, ge=0, le=1, description="Chance that a prompt crosses two parents over instead of mutating.")
    crossover_min_population: int = Field(3, ge=2, description="Crossover only once the population has this many programs.")

    def build(self) -> "EvolveStrategy":
        return EvolveStrategy(self)


def code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def fitness(b: Behaviour, config: EvolveConfig) -> float:
    simplicity = 1.0 / (1.0 + code_lines(b.representative.source) / config.simplicity_lines)
    w = config.correctness_weight
    return w * b.train_accuracy + (1.0 - w) * simplicity


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _draw(weights: list[float], rng: random.Random, taken: set[int]) -> int:
    """Index drawn with probability proportional to its weight among those not taken."""
    free = [i for i in range(len(weights)) if i not in taken]
    total = sum(weights[i] for i in free)
    r = rng.random() * total
    for i in free:
        r -= weights[i]
        if r < 0:
            return i
    return free[-1]


class EvolveStrategy:
    name = "evolve"

    def samples(self, request_index: int) -> Optional[int]:
        return self.config.refine_samples

    def __init__(self, config: EvolveConfig):
        self.config = config

    def weights(self, pop: Sequence[Behaviour]) -> tuple[list[float], list[float], float]:
        """(fitness, selection weight) of each program, and the sigmoid midpoint."""
        cfg = self.config
        fit = [fitness(b, cfg) for b in pop]
        midpoint = float(np.percentile(fit, cfg.midpoint_percentile))
        weights = [
            _sigmoid(cfg.sharpness * (f - midpoint)) * (1.0 / (1.0 + b.times_refined) if cfg.novelty else 1.0)
            for f, b in zip(fit, pop)
        ]
        return fit, weights, midpoint

    def choose(self, population: Sequence[Behaviour], *, k: int, rng: random.Random, request_index: int) -> Optional[ParentChoice]:
        cfg = self.config
        pop, island = eligible(population, cfg, request_index)
        if not pop or k <= 0:
            return None
        fit, weights, midpoint = self.weights(pop)
        total = sum(weights)
        crossover = len(pop) >= cfg.crossover_min_population and rng.random() < cfg.crossover_rate
        n = max(k, 2) if crossover else k
        taken: list[int] = []
        for _ in range(min(n, len(pop))):
            taken.append(_draw(weights, rng, set(taken)))
        if cfg.pooling and not crossover:
            # The first parent by weight, the others by the pairs they add; the rest by weight.
            rest = sorted((i for i in range(len(pop)) if i != taken[0]), key=lambda i: (-weights[i], i))
            position = {id(b): i for i, b in enumerate(pop)}
            chosen = [(position[id(b)], via) for b, via in pool_parents([pop[taken[0]]] + [pop[i] for i in rest], n)]
        else:
            chosen = [(i, "selection") for i in taken]
        for i, _ in chosen:
            pop[i].times_refined += 1
        picks = [Pick(pop[i], weight=weights[i], via=via, probability=weights[i] / total, fitness=fit[i]) for i, via in chosen]
        failures = sorted({j for i, _ in chosen for j in failed_pairs(pop[i])})
        focus = None
        if cfg.failures_shown and len(failures) > cfg.failures_shown:
            focus = sorted(rng.sample(failures, cfg.failures_shown))
        return ParentChoice(
            strategy=self.name, move="crossover" if crossover else "refine", picks=picks, population=len(pop),
            island=island, details={"midpoint": midpoint, "total_weight": total}, focus=focus,
            reject_non_fixing=cfg.reject_non_fixing,
        )
