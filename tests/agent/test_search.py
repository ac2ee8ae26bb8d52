"""A task's search: a failed verification cancels its siblings; parent selection follows the config.

The sandbox is not under test here: :class:`StallingVerifier` is a TEST DOUBLE that
fails one program and keeps the others running until cancelled, and verdicts of
parents are computed by hand from real ARC grids.
"""

from __future__ import annotations

import asyncio

import pytest

import numpy as np

from agent.candidate import Candidate
from agent.config import BudgetConfig, PromptConfig, RunConfig, SamplingConfig, SearchConfig
from agent.loop import SolveContext, solve_task
from agent.search import TaskSearch, gather_or_cancel
from arcsynth.datasets import load_dataset
from arcsynth.grid import grid_to_list
from sandbox.verdict import CandidateVerdict, PairVerdict
from scripted_backend import FLIPLR, IDENTITY, ROT180, MemoryRecorder, ScriptedBackend

ROT = "3c9b0459"


class StallingVerifier:
    """TEST DOUBLE of the sandbox: programs containing ``fliplr`` fail, the others never finish."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0

    async def run(self, source, task, check_test=False):
        if "fliplr" in source:
            await asyncio.sleep(0.05)  # the siblings are running by now
            raise RuntimeError("sandbox broke")
        self.running += 1
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        raise AssertionError("a sibling of a failed verification ran to the end")


async def test_a_failed_verification_cancels_its_siblings():
    task = load_dataset("arc1:train").get(ROT)
    verifier = StallingVerifier()
    config = RunConfig(
        seed=0, sampling=SamplingConfig(samples_per_prompt=3, max_tokens=200),
        prompt=PromptConfig(max_prompt_tokens=6000), budget=BudgetConfig(rounds=1, stop_after_passing=None),
    )
    backend = ScriptedBackend(lambda rid, m, p: [ROT180, FLIPLR, IDENTITY])
    rec = MemoryRecorder()
    outcome = await asyncio.wait_for(
        solve_task(task, SolveContext(config=config, backend=backend, sandbox=verifier, recorder=rec)), timeout=20
    )
    assert outcome.status == "error" and "sandbox broke" in outcome.stop_reason
    # Both siblings were cancelled before the task ended, not left running.
    assert verifier.cancelled == 2 and verifier.running == 0


async def test_gather_or_cancel_returns_results_in_order():
    async def later(value, delay):
        await asyncio.sleep(delay)
        return value

    assert await gather_or_cancel([later("a", 0.03), later("b", 0.0), later("c", 0.01)]) == ["a", "b", "c"]
    assert await gather_or_cancel([]) == []


async def test_gather_or_cancel_raises_the_first_failure_after_cancelling_the_rest():
    finished: list[str] = []

    async def fail():
        await asyncio.sleep(0.01)
        raise ValueError("first")

    async def slow(name):
        try:
            await asyncio.sleep(60)
        finally:
            finished.append(name)

    with pytest.raises(ValueError, match="first"):
        await asyncio.wait_for(gather_or_cancel([slow("x"), fail(), slow("y")]), timeout=10)
    assert sorted(finished) == ["x", "y"]  # both were cancelled and had finished by the time it raised


async def test_cancelling_the_caller_cancels_every_awaitable():
    finished: list[str] = []

    async def slow(name):
        try:
            await asyncio.sleep(60)
        finally:
            finished.append(name)

    caller = asyncio.ensure_future(gather_or_cancel([slow("x"), slow("y")]))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sorted(finished) == ["x", "y"]


def _candidate(task, pid: str, order: int, fn) -> Candidate:
    train = []
    for pair in task.train:
        out = fn(pair.input)
        acc = float((out == pair.output).mean())
        train.append(PairVerdict(status="pass" if acc == 1.0 else "wrong", output=grid_to_list(out), shape_match=True, cell_accuracy=acc))
    verdict = CandidateVerdict(train=train, test=[], isolation=[])
    return Candidate(pid, (0, 0, order), f"def transform(grid):\n    return grid  # {pid}\n", pid, verdict)


def _parents_chosen(selection_c: float) -> set[str]:
    task = load_dataset("arc1:train").get(ROT)
    config = RunConfig(
        seed=0, sampling=SamplingConfig(samples_per_prompt=1, max_tokens=50), prompt=PromptConfig(max_prompt_tokens=6000),
        budget=BudgetConfig(rounds=2, refine_prompts=12, stop_after_passing=None), search=SearchConfig(selection_c=selection_c),
    )
    backend = ScriptedBackend(lambda rid, m, p: [IDENTITY])
    search = TaskSearch(task, SolveContext(config=config, backend=backend, sandbox=StallingVerifier(), recorder=MemoryRecorder()))

    def almost(g):  # rotated, one cell off: high accuracy, still not passing
        out = np.rot90(g, 2).copy()
        out[0, 0] = (out[0, 0] + 1) % 10
        return out

    search.pool.add(_candidate(task, "almost", 0, almost))
    search.pool.add(_candidate(task, "blank", 1, lambda g: np.full_like(g, 9)))
    return {pid for req in search.plan_round(1) for pid in req.parent_ids}


def test_parent_selection_uses_the_configured_c():
    # A large C trusts train accuracy: only the near-solution is refined.
    # C = 0 ignores it: both programs are refined.
    assert _parents_chosen(10_000.0) == {"almost"}
    assert _parents_chosen(0.0) == {"almost", "blank"}
