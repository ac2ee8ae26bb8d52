"""Verdicts: what the trusted process concluded about a candidate program.

These are computed outside the sandbox from the grids the program produced; the
program never sees an expected output and never takes part in the comparison.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PairStatus = Literal["pass", "wrong", "error", "timeout", "invalid_output", "unchecked"]
"""``unchecked``: the program produced a valid grid but no expected output was
compared (test inputs during a solve, whose answers the agent must not see)."""


class PairVerdict(BaseModel):
    """The outcome of running a program on one input grid."""

    status: PairStatus = Field(description="pass | wrong | error | timeout | invalid_output | unchecked")
    output: list[list[int]] | None = Field(None, description="The grid produced, when the program returned a valid one.")
    expected_shape: tuple[int, int] | None = Field(None, description="Shape of the expected output, when one was compared.")
    shape_match: bool | None = Field(None, description="Output shape equals expected shape (None when nothing was compared).")
    cell_accuracy: float | None = Field(
        None, description="Fraction of cells equal to the expected output; only when the shapes match."
    )
    error_type: str | None = Field(None, description="Exception class name, 'Timeout', 'Killed', 'InvalidOutput', ...")
    error: str | None = Field(None, description="The last lines of the traceback or the reason the output was rejected.")
    runtime_s: float = Field(0.0, description="Wall time spent on this pair inside the sandbox.")


class CandidateVerdict(BaseModel):
    """All pair verdicts of one program on one task, and the figures derived from them."""

    train: list[PairVerdict]
    test: list[PairVerdict]
    isolation: list[str] = Field(description="The isolation layers that were active, e.g. ['rlimits', 'seccomp', ...].")
    rechecked: bool = Field(
        False,
        description="The program passed every train pair in a process forked from the clean snapshot, which no "
        "earlier program touched (every program runs so now; a second run would repeat it exactly).",
    )

    @property
    def all_train_pass(self) -> bool:
        return bool(self.train) and all(v.status == "pass" for v in self.train)

    @property
    def pairs_passed(self) -> int:
        return sum(v.status == "pass" for v in self.train)

    @property
    def shape_match(self) -> bool:
        """Every train output had the expected shape."""
        return bool(self.train) and all(v.shape_match for v in self.train)

    @property
    def train_accuracy(self) -> float:
        """Mean cell accuracy over train pairs, a wrong shape or a failure counting 0."""
        if not self.train:
            return 0.0
        return sum(v.cell_accuracy or 0.0 for v in self.train) / len(self.train)

    def summary(self) -> dict:
        """The JSON form used by ``arcsynth verify --json`` and the run trace."""
        return {
            "all_train_pass": self.all_train_pass,
            "pairs_passed": self.pairs_passed,
            "train_accuracy": self.train_accuracy,
            "shape_match": self.shape_match,
            "rechecked": self.rechecked,
            "isolation": self.isolation,
            "train": [v.model_dump() for v in self.train],
            "test": [v.model_dump() for v in self.test],
        }
