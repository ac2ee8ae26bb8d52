"""Per-task budget, and the exceptions that end a task's search.

Control leaves the solve loop through exceptions that carry their reason (the
``stop_reason`` recorded in the trace), not through flags checked everywhere.
"""

from __future__ import annotations

import time


class StopSolving(Exception):
    """The search of one task ends; ``reason`` is recorded as its stop reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BudgetExhausted(StopSolving):
    """A limit of the task budget (programs, completion tokens, wall time) is reached."""


class EnoughPassing(StopSolving):
    """``stop_after_passing`` distinct programs pass every train pair."""


class TaskBudget:
    """What one task may still spend.

    Programs and completion tokens are *reserved* before a request is sent
    (``n`` programs, ``n x max_tokens`` tokens) and settled when it returns, so
    requests running at the same time can never overshoot a limit together.
    ``None`` means unlimited.
    """

    def __init__(
        self,
        *,
        max_programs: int | None,
        max_completion_tokens: int | None,
        max_wall_s: float | None,
        clock=time.monotonic,
    ):
        self.max_programs = max_programs
        self.max_completion_tokens = max_completion_tokens
        self._clock = clock
        self.started = clock()
        self.deadline = None if max_wall_s is None else self.started + max_wall_s
        self.programs = 0
        self.completion_tokens = 0
        self._reserved_programs = 0
        self._reserved_tokens = 0

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self._clock()

    def check_time(self) -> None:
        left = self.time_left()
        if left is not None and left <= 0:
            raise BudgetExhausted("max_task_wall_s")

    def reserve(self, n: int, max_tokens: int) -> int:
        """Reserve up to ``n`` completions; return how many fit (raise when none does)."""
        self.check_time()
        if self.max_programs is not None:
            n = min(n, self.max_programs - self.programs - self._reserved_programs)
            if n <= 0:
                raise BudgetExhausted("max_programs")
        if self.max_completion_tokens is not None:
            free = self.max_completion_tokens - self.completion_tokens - self._reserved_tokens
            n = min(n, free // max_tokens)
            if n <= 0:
                raise BudgetExhausted("max_completion_tokens")
        self._reserved_programs += n
        self._reserved_tokens += n * max_tokens
        return n

    def settle(self, reserved_n: int, max_tokens: int, *, programs: int, completion_tokens: int) -> None:
        """Replace a reservation by what the request really cost."""
        self._reserved_programs -= reserved_n
        self._reserved_tokens -= reserved_n * max_tokens
        self.programs += programs
        self.completion_tokens += completion_tokens

    def reserve_tokens(self, max_tokens: int) -> int:
        """Reserve one completion of up to ``max_tokens`` that makes no program (a REPL turn);
        return the tokens it may use (raise when none are left)."""
        self.check_time()
        if self.max_completion_tokens is not None:
            free = self.max_completion_tokens - self.completion_tokens - self._reserved_tokens
            max_tokens = min(max_tokens, free)
            if max_tokens <= 0:
                raise BudgetExhausted("max_completion_tokens")
        self._reserved_tokens += max_tokens
        return max_tokens

    def settle_tokens(self, reserved: int, spent: int) -> None:
        self._reserved_tokens -= reserved
        self.completion_tokens += spent

    def elapsed(self) -> float:
        return self._clock() - self.started
