"""Candidates: verified programs of one task, deduplicated by source and by behaviour.

Two programs with the same normalised source are the same program: the second is
recorded but never run. Two programs that produce the same grids on every train
and test input *behave* the same: both are kept, but they form one
:class:`Behaviour`, which is what parent selection and voting work on, so a
program the model repeats in many spellings neither floods the parents nor
out-votes the others.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Optional

from sandbox.verdict import CandidateVerdict, PairVerdict

GridKey = Optional[tuple[tuple[int, ...], ...]]
"""A produced grid as a hashable value; ``None`` where no valid grid came out."""


def grid_key(verdict: PairVerdict) -> GridKey:
    if verdict.output is None:
        return None
    return tuple(tuple(row) for row in verdict.output)


@dataclass
class Candidate:
    """One program that ran in the sandbox, and its verdict."""

    program_id: str
    order: tuple[int, int, int]
    """(round, request index, completion index): a position independent of timing."""
    source: str
    program_hash: str
    verdict: CandidateVerdict
    parent_ids: tuple[str, ...] = ()
    rejected: bool = False
    """It fixed none of the failures its prompt showed: never chosen as a parent
    (evolution's rejection); it still votes."""

    @property
    def round(self) -> int:
        return self.order[0]

    @property
    def passing(self) -> bool:
        return self.verdict.all_train_pass

    @property
    def behaviour_key(self) -> tuple[GridKey, ...]:
        return tuple(grid_key(v) for v in [*self.verdict.train, *self.verdict.test])


@dataclass
class Behaviour:
    """Programs with identical outputs on every input; the first one represents them."""

    representative: Candidate
    members: list[Candidate] = field(default_factory=list)
    """Every program of the behaviour, in program order (not arrival order), so
    that a run and its replay list them alike."""
    times_refined: int = 0
    """How often the representative was shown as a parent (REX's N)."""

    def __post_init__(self) -> None:
        if not self.members:
            self.members.append(self.representative)

    @property
    def program_ids(self) -> list[str]:
        return [c.program_id for c in self.members]

    def add(self, candidate: Candidate) -> Candidate:
        """Add a program with this behaviour; return the representative it had before."""
        bisect.insort(self.members, candidate, key=lambda c: c.order)
        earlier = self.representative
        # Verification finishes in whatever order the sandbox pool gets to it; the
        # representative must not depend on that, or parent choice would not replay.
        self.representative = self.members[0]
        return earlier

    @property
    def passing(self) -> bool:
        return self.representative.passing

    @property
    def rejected(self) -> bool:
        """Every program of the behaviour was rejected as a parent."""
        return all(c.rejected for c in self.members)

    @property
    def train_accuracy(self) -> float:
        return self.representative.verdict.train_accuracy

    def test_output(self, index: int) -> GridKey:
        tests = self.representative.verdict.test
        return grid_key(tests[index]) if index < len(tests) else None


class CandidatePool:
    """Every program of one task, keyed for both kinds of deduplication."""

    def __init__(self) -> None:
        self._by_hash: dict[str, str] = {}
        self._by_behaviour: dict[tuple[GridKey, ...], Behaviour] = {}
        self.candidates: list[Candidate] = []
        self.passing_programs = 0

    def source_duplicate_of(self, program_hash: str) -> str | None:
        return self._by_hash.get(program_hash)

    def claim(self, program_hash: str, program_id: str) -> str | None:
        """Register a program before it runs; return the program it duplicates, if any.

        Claimed before verification so that two identical programs verified at
        the same moment are still run once.
        """
        first = self._by_hash.setdefault(program_hash, program_id)
        return None if first == program_id else first

    def add(self, candidate: Candidate) -> str | None:
        """Add a verified program; return the program whose behaviour it repeats, if any."""
        self.candidates.append(candidate)
        if candidate.passing:
            self.passing_programs += 1
        key = candidate.behaviour_key
        behaviour = self._by_behaviour.get(key)
        if behaviour is None:
            self._by_behaviour[key] = Behaviour(candidate)
            return None
        return behaviour.add(candidate).program_id

    @property
    def behaviours(self) -> list[Behaviour]:
        """Every distinct behaviour, in program order (not arrival order)."""
        return sorted(self._by_behaviour.values(), key=lambda b: b.representative.order)

    def agreement(self) -> int:
        """Distinct passing programs when they all give the same output on every test input, else 0."""
        passing = [b for b in self.behaviours if b.passing]
        n_test = len(passing[0].representative.verdict.test) if passing else 0
        if not passing or len({tuple(b.test_output(i) for i in range(n_test)) for b in passing}) != 1:
            return 0
        return sum(len(b.program_ids) for b in passing)

    def refinable(self) -> list[Behaviour]:
        """Behaviours worth refining: not yet passing (a passing program needs no feedback)
        and not rejected as parents."""
        return [b for b in self.behaviours if not b.passing and not b.rejected]
