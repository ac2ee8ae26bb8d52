"""``rex``: REX Thompson sampling over the programs found so far (SOAR's refinement).

Each program is an arm; one draw per program from its Beta posterior (see
:mod:`agent.selection`), best draws become the prompt's parents. With the
default knobs this is exactly the search arcsynth has always run.
"""

from __future__ import annotations

import random
from typing import Literal, Optional, Sequence

from pydantic import Field

from agent.candidate import Behaviour
from agent.selection import DEFAULT_C, thompson_order
from agent.strategies.base import CommonKnobs, ParentChoice, Pick, eligible, pool_parents


class RexConfig(CommonKnobs):
    """REX: Thompson sampling on train accuracy, refined programs drawn less often."""

    kind: Literal["rex"] = Field("rex", description="Strategy name.")
    c: float = Field(
        DEFAULT_C, ge=0.0, allow_inf_nan=False,
        description="REX's C: how much parent selection trusts train accuracy over exploring programs refined "
        "less often (SOAR uses 20; 0 picks parents uniformly at random).",
    )

    def build(self) -> "RexStrategy":
        return RexStrategy(self)


class RexStrategy:
    name = "rex"

    def samples(self, request_index: int) -> Optional[int]:
        return self.config.refine_samples

    def __init__(self, config: RexConfig):
        self.config = config

    def choose(self, population: Sequence[Behaviour], *, k: int, rng: random.Random, request_index: int) -> Optional[ParentChoice]:
        pop, island = eligible(population, self.config, request_index)
        if not pop or k <= 0:
            return None
        order = thompson_order(pop, rng, c=self.config.c)
        draw = {id(pop[i]): d for d, i in order}
        ranked = [pop[i] for _, i in order]
        chosen = pool_parents(ranked, k) if self.config.pooling else [(b, "selection") for b in ranked[:k]]
        for b, _ in chosen:
            b.times_refined += 1
        picks = [Pick(b, weight=draw[id(b)], via=via, fitness=b.train_accuracy) for b, via in chosen]
        return ParentChoice(
            strategy=self.name, move="refine", picks=picks, population=len(pop), island=island,
            details={"c": self.config.c},
        )
