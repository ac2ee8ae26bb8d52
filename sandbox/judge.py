"""Judging: from what a worker sent back to pair and candidate verdicts.

Runs in the trusted process only. Output grids arrive as parsed frames and go
through ``arcsynth.grid.parse_grid`` before ``grids_equal`` compares them with
the expected outputs, which no worker ever saw.
"""

from __future__ import annotations

import numpy as np

from arcsynth.grid import GridError, grids_equal, parse_grid
from arcsynth.task import Task
from sandbox import protocol as P
from sandbox.config import WALL_BACKSTOP_FACTOR, SandboxConfig
from sandbox.pool import Exchange
from sandbox.verdict import CandidateVerdict, PairVerdict


def judge(task: Task, ex: Exchange, config: SandboxConfig, layers: list[str], *, check_test: bool) -> CandidateVerdict:
    """Verdicts for every train and test pair of ``task`` from one exchange."""
    pairs = list(task.train) + list(task.test)
    n_train = len(task.train)
    out: list[PairVerdict] = []
    failed_at = len(ex.results)
    spent = 0.0  # CPU time of the pairs so far, against the program limit
    over_at = None  # the pair where the program went over a limit
    for i, pair in enumerate(pairs):
        expected = pair.output if (i < n_train or check_test) else None
        if i >= failed_at:
            out.append(_failure(ex, i, failed_at, expected, config))
            continue
        r = ex.results[i]
        spent += r.runtime
        if over_at is not None or (r.error_type == "Skipped" and out and out[-1].status == "timeout"):
            # The program was stopped, or went over a limit, on an earlier pair.
            why = r.message if over_at is None else f"not counted: the program went over a time limit on pair {over_at}"
            out.append(PairVerdict(status="timeout", error_type="Skipped", error=why, expected_shape=_shape(expected)))
        elif r.runtime > config.pair_timeout_s:
            # Finished, but later than allowed (the worker kills only past a grace).
            msg = f"took {r.runtime:.2f} s of CPU time on this pair (pair limit {config.pair_timeout_s:g} s CPU)"
            out.append(PairVerdict(status="timeout", error_type="Timeout", error=msg, expected_shape=_shape(expected), runtime_s=r.runtime))
            over_at = i
        elif spent > config.candidate_timeout_s and not (r.kind == P.KIND_ERROR and r.error_type == "Timeout"):
            msg = f"took {spent:.2f} s of CPU time on pairs 0-{i} (program limit {config.candidate_timeout_s:g} s CPU)"
            out.append(PairVerdict(status="timeout", error_type="Timeout", error=msg, expected_shape=_shape(expected), runtime_s=r.runtime))
            over_at = i
        else:
            out.append(pair_verdict(r, expected))
    return CandidateVerdict.model_construct(train=out[:n_train], test=out[n_train:], isolation=list(layers), rechecked=False)


def _shape(expected: np.ndarray | None) -> tuple[int, int] | None:
    return tuple(expected.shape) if expected is not None else None  # type: ignore[return-value]


def _failure(ex: Exchange, i: int, failed_at: int, expected: np.ndarray | None, cfg: SandboxConfig) -> PairVerdict:
    """The pair the program was on when it timed out, crashed or broke the protocol, and the ones after it."""
    shape = _shape(expected)
    if ex.outcome == "timeout":
        # The worker enforces the limits (CPU time, and a wall-clock backstop for
        # a program that sleeps); this is the trusted side's deadline past those.
        status, etype = "timeout", "Timeout"
        if i == failed_at:
            msg = (f"the worker gave no result for {ex.elapsed:.1f} s of wall-clock time, past its own limits "
                   f"(pair limit {cfg.pair_timeout_s:g} s CPU, program limit {cfg.candidate_timeout_s:g} s CPU, "
                   f"{WALL_BACKSTOP_FACTOR:g}x in wall-clock time for a program that sleeps or blocks); it was replaced")
            return PairVerdict(status=status, error_type=etype, error=msg, expected_shape=shape)
    elif ex.outcome == "died":
        # A program's own crash ends only its child, which the worker reports
        # as the program's error; the worker itself dies only from outside.
        status, etype = "error", "WorkerKilled"
        if i == failed_at:
            msg = f"the worker process {ex.detail or 'died'} while running this program: ended from outside the sandbox, not by the program"
            return PairVerdict(status=status, error_type=etype, error=msg, expected_shape=shape)
    else:
        status, etype = "error", "ProtocolError"
        if i == failed_at:
            msg = f"the worker's result frames were invalid ({ex.detail}); did the program write to the result channel?"
            return PairVerdict(status=status, error_type=etype, error=msg[:400], expected_shape=shape)
    return PairVerdict(
        status=status,
        error_type="Skipped",
        error=f"not run: the program failed on pair {failed_at} ({etype})",
        expected_shape=shape,
    )


def pair_verdict(r: P.Result, expected: np.ndarray | None) -> PairVerdict:
    """The verdict for one parsed result; ``expected`` None means 'unchecked'."""
    # model_construct: every value below is built here from parsed, typed data,
    # and validating a 900-cell output list again costs more than the comparison.
    make = PairVerdict.model_construct
    shape = _shape(expected)
    if r.kind == P.KIND_ERROR and r.error_type == "Timeout":  # the worker stopped it at a CPU limit
        return make(status="timeout", error_type="Timeout", error=r.message, expected_shape=shape, runtime_s=r.runtime)
    if r.kind == P.KIND_ERROR:
        return make(status="error", error_type=r.error_type or "Error", error=r.message, expected_shape=shape, runtime_s=r.runtime)
    if r.kind == P.KIND_INVALID:
        return make(status="invalid_output", error_type="InvalidOutput", error=r.message, expected_shape=shape, runtime_s=r.runtime)
    assert r.shape is not None and r.cells is not None
    try:
        grid = parse_grid(np.frombuffer(r.cells, dtype=np.uint8).reshape(r.shape))
    except GridError as e:  # unreachable after the frame checks; parse_grid stays the single authority
        return make(status="invalid_output", error_type="InvalidOutput", error=str(e), expected_shape=shape, runtime_s=r.runtime)
    output = grid.tolist()
    if expected is None:
        return make(status="unchecked", output=output, runtime_s=r.runtime)
    match = grid.shape == expected.shape
    acc = float(np.count_nonzero(grid == expected)) / grid.size if match else None
    return make(
        status="pass" if grids_equal(grid, expected) else "wrong",
        output=output,
        expected_shape=shape,
        shape_match=match,
        cell_accuracy=acc,
        runtime_s=r.runtime,
    )
