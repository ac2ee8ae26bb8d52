"""Search strategies: which earlier programs each refinement prompt shows, and why.

``search.strategy`` in the run config selects one (a tagged union on ``kind``):

- ``rex`` (:mod:`agent.strategies.rex`): REX Thompson sampling, as SOAR; the default.
- ``evolve`` (:mod:`agent.strategies.evolve`): Imbue-style evolution: sigmoid
  weights with a novelty bonus, failure batches, rejection of children that fix
  nothing, crossover.
- ``mix`` (:mod:`agent.strategies.mix`): both, dealt requests in a fixed share.

Knobs every strategy has (islands, completions per refinement prompt, whether
errors are refined, Berman's pooling) are in :class:`CommonKnobs`. To add a
strategy: write one module with a config model (a ``kind`` literal and a
``build()`` returning an object with ``name`` and ``choose``) and add the config
to :data:`StrategyConfig`.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from agent.strategies.base import CommonKnobs, ParentChoice, Pick, Strategy, pool_parents
from agent.strategies.evolve import EvolveConfig, EvolveStrategy
from agent.strategies.mix import MixConfig, MixStrategy
from agent.strategies.rex import RexConfig, RexStrategy

StrategyConfig = Annotated[Union[RexConfig, EvolveConfig, MixConfig], Field(discriminator="kind")]
"""The ``search.strategy`` table; ``kind`` picks the strategy."""

STRATEGY_KINDS = ("rex", "evolve", "mix")


def make_strategy(config: Any) -> Strategy:
    """The strategy a validated ``search.strategy`` config describes."""
    return config.build()


__all__ = [
    "CommonKnobs", "EvolveConfig", "EvolveStrategy", "MixConfig", "MixStrategy", "ParentChoice", "Pick",
    "RexConfig", "RexStrategy", "STRATEGY_KINDS", "Strategy", "StrategyConfig", "make_strategy", "pool_parents",
]
