"""``mix``: REX and evolution side by side in one search.

Refinement requests are dealt to the two strategies in a fixed, even pattern:
request q of a round goes to evolution when ``floor((q + 1) x evolve_share)``
exceeds ``floor(q x evolve_share)`` (share 0.5: every second request). Both choose
from the same population, so each exploits what the other found; the trace says
which one chose each prompt's parents.
"""

from __future__ import annotations

import math
import random
from typing import Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from agent.candidate import Behaviour
from agent.strategies.base import ParentChoice
from agent.strategies.evolve import EvolveConfig, EvolveStrategy
from agent.strategies.rex import RexConfig, RexStrategy


class MixConfig(BaseModel):
    """REX and evolution dealt refinement requests in a fixed share."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: Literal["mix"] = Field("mix", description="Strategy name.")
    evolve_share: float = Field(0.5, ge=0, le=1, description="Fraction of refinement requests whose parents evolution chooses; REX chooses the rest.")
    rex: RexConfig = Field(default_factory=RexConfig, description="The REX part.")
    evolve: EvolveConfig = Field(default_factory=EvolveConfig, description="The evolution part.")

    def build(self) -> "MixStrategy":
        return MixStrategy(self)


class MixStrategy:
    name = "mix"

    def __init__(self, config: MixConfig):
        self.config = config
        self.rex = RexStrategy(config.rex)
        self.evolve = EvolveStrategy(config.evolve)

    def part_for(self, request_index: int):
        s = self.config.evolve_share
        return self.evolve if math.floor((request_index + 1) * s) > math.floor(request_index * s) else self.rex

    def samples(self, request_index: int) -> Optional[int]:
        return self.part_for(request_index).samples(request_index)

    def choose(self, population: Sequence[Behaviour], *, k: int, rng: random.Random, request_index: int) -> Optional[ParentChoice]:
        return self.part_for(request_index).choose(population, k=k, rng=rng, request_index=request_index)
