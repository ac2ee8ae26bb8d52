"""What every search strategy shares: the choice it returns, the knobs common to all,
and the population it chooses from.

A strategy answers one question per refinement request: which earlier programs
does this prompt show, and why. :class:`ParentChoice` carries the answer and the
reasons (each parent's weight), which the search records as a ``parents`` trace
event, so a viewer can draw the lineage and say why each branch was taken.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Optional, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field

from agent.candidate import Behaviour

FAILED_STATUSES = ("error", "timeout", "invalid_output")
"""Train pair statuses that make a program an *error* (SOAR does not refine those)."""


class CommonKnobs(BaseModel):
    """Knobs every strategy has (SOAR's moves that are not about weights)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    islands: int = Field(
        1, ge=1,
        description="Independent sub-populations (SOAR uses 4). A program belongs to island q mod islands, q being "
        "the index of the request that wrote it; refinement request q chooses parents from island q mod islands "
        "only (from every island while its own has none), so separate lines of descent keep their diversity.",
    )
    refine_samples: Optional[int] = Field(
        None, ge=1,
        description="Completions sampled from each refinement prompt (SOAR: 4); unset = sampling.samples_per_prompt.",
    )
    refine_errors: bool = Field(
        True,
        description="Refine programs that raise, time out or return an invalid grid on some train pair; false "
        "leaves them out of the parents, as SOAR does (they still vote when nothing better exists).",
    )
    pooling: bool = Field(
        False,
        description="Berman's pooling: after the first parent, each further parent of a prompt (up to "
        "prompt.parents_per_prompt) is the one solving most train pairs that the parents chosen so far do not "
        "solve; parents that add no solved pair are filled in by the strategy's own order.",
    )


@dataclass
class Pick:
    """One parent of a prompt and why it was chosen."""

    behaviour: Behaviour
    weight: float
    """The figure it was chosen by: REX's Thompson draw, or evolution's selection weight."""
    via: Literal["selection", "pooling"] = "selection"
    probability: Optional[float] = None
    """Its chance to be drawn first (evolution); None where no such chance is defined (REX)."""
    fitness: Optional[float] = None


@dataclass
class ParentChoice:
    """The parents of one refinement prompt, and what the prompt does with them."""

    strategy: str
    move: Literal["refine", "crossover"]
    picks: list[Pick]
    population: int
    """Programs it chose from (after the island and error filters)."""
    island: Optional[int] = None
    details: dict[str, float] = field(default_factory=dict)
    """Strategy figures behind the weights (e.g. evolution's sigmoid midpoint)."""
    focus: Optional[list[int]] = None
    """Train pairs whose failures the prompt details (the rest get one line); None = all."""
    reject_non_fixing: bool = False
    """A child that passes none of the failures shown is not a parent (still votes)."""

    @property
    def parents(self) -> list[Behaviour]:
        return [p.behaviour for p in self.picks]


class Strategy(Protocol):
    """Chooses the parents of one refinement request."""

    name: str

    def samples(self, request_index: int) -> Optional[int]:
        """Completions for refinement request ``request_index``; None = sampling.samples_per_prompt."""
        ...

    def choose(self, population: Sequence[Behaviour], *, k: int, rng: random.Random, request_index: int) -> Optional[ParentChoice]:
        """Parents for request ``request_index`` of a round, or None to sample afresh.

        ``population`` is the round's snapshot of programs that may be parents (not
        passing, not rejected), in program order; ``k`` is prompt.parents_per_prompt.
        May update the behaviours' ``times_refined``. Must be deterministic for a
        given ``rng`` state and population.
        """
        ...


def is_error(b: Behaviour) -> bool:
    """The program raised, timed out or returned an invalid grid on some train pair."""
    return any(v.status in FAILED_STATUSES for v in b.representative.verdict.train)


def island_of(b: Behaviour, islands: int) -> int:
    """The island of a program: the index of the request that wrote its representative, mod ``islands``."""
    return b.representative.order[1] % islands


def eligible(
    population: Sequence[Behaviour], knobs: CommonKnobs, request_index: int
) -> tuple[list[Behaviour], Optional[int]]:
    """The programs request ``request_index`` may choose from, and its island (None with one island)."""
    pop = [b for b in population if knobs.refine_errors or not is_error(b)]
    if knobs.islands <= 1:
        return pop, None
    island = request_index % knobs.islands
    mine = [b for b in pop if island_of(b, knobs.islands) == island]
    return (mine or pop), island


def solved_pairs(b: Behaviour) -> frozenset[int]:
    return frozenset(i for i, v in enumerate(b.representative.verdict.train) if v.status == "pass")


def failed_pairs(b: Behaviour) -> list[int]:
    return [i for i, v in enumerate(b.representative.verdict.train) if v.status != "pass"]


def pool_parents(ordered: Sequence[Behaviour], k: int) -> list[tuple[Behaviour, str]]:
    """Berman's pooling over ``ordered`` (the strategy's preference, best first).

    The first parent is the strategy's first choice; each next one solves the most
    train pairs not solved by those already chosen (ties: the strategy's order).
    When no remaining program adds a solved pair, the rest follow the strategy's
    order. Returns (behaviour, 'selection' | 'pooling') pairs.
    """
    if k <= 0 or not ordered:
        return []
    chosen: list[tuple[Behaviour, str]] = [(ordered[0], "selection")]
    covered = set(solved_pairs(ordered[0]))
    rest = list(ordered[1:])
    while len(chosen) < k and rest:
        gains = [len(solved_pairs(b) - covered) for b in rest]
        best = max(range(len(rest)), key=lambda j: (gains[j], -j))
        if gains[best] == 0:
            break
        b = rest.pop(best)
        covered |= solved_pairs(b)
        chosen.append((b, "pooling"))
    for b in rest[: k - len(chosen)]:
        chosen.append((b, "selection"))
    return chosen
