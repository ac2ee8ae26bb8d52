"""The worker pool under asyncio: many candidates at once, replacement, cancellation."""

from __future__ import annotations

import asyncio
import gc
import random
import time

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROT180 = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n"
WRONG = "def transform(grid):\n    return grid.T\n"
ERROR = "def transform(grid):\n    return grid[100]\n"
LOOP = "def transform(grid):\n    while True:\n        pass\n"
CRASH = "import os\ndef transform(grid):\n    os._exit(1)\n"
TAINT = "import numpy as np\nnp.rot90 = lambda m, k=1, axes=(0, 1): m\ndef transform(grid):\n    return grid\n"


def expected_outcome(source: str, verdict) -> bool:
    first = verdict.train[0]
    if source == ROT180:
        return verdict.all_train_pass and verdict.rechecked
    if source == WRONG or source == TAINT:
        return first.status == "wrong"
    if source == ERROR:
        return first.status == "error" and first.error_type == "IndexError"
    if source == LOOP:
        return first.status == "timeout"
    if source == CRASH:
        return first.status == "error" and first.error_type == "Crashed"
    raise AssertionError(source)


async def test_many_candidates_at_once_keep_the_loop_responsive(sandbox, rot180_task):
    # Programs that kill or taint their worker are mixed in: candidates queued
    # behind them on the same worker must be re-sent, never mixed up.
    rng = random.Random(7)
    sources = [ROT180] * 20 + [WRONG] * 80 + [ERROR] * 40 + [LOOP] * 2 + [CRASH] * 4 + [TAINT] * 4
    rng.shuffle(sources)
    gaps: list[float] = []
    done = False

    async def ticker():
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    # A full collection of the test session's heap (hundreds of earlier tests) can pause
    # this process for half a second under load: that is not the sandbox blocking the loop.
    gc.collect()
    gc.freeze()
    try:
        tick = asyncio.create_task(ticker())
        before = dict(sandbox.stats)
        verdicts = await asyncio.gather(*(sandbox.run(s, rot180_task) for s in sources))
        done = True
        await tick
    finally:
        gc.unfreeze()
    wrong = [(s, v.train[0]) for s, v in zip(sources, verdicts) if not expected_outcome(s, v)]
    assert not wrong, wrong[:3]
    # The event loop was never blocked for long while 150 programs ran.
    assert max(gaps) < 0.4
    after = sandbox.stats
    assert after["candidates"] - before["candidates"] == len(sources)
    assert after["timeouts"] - before["timeouts"] >= 2
    assert after["crashes"] - before["crashes"] >= 4
    # No program costs a worker: a loop, a crash or a taint ends the program's
    # own child process, and the worker forks the next one from its clean state.
    assert after["respawns"] - before["respawns"] == 0


async def test_cancelled_run_leaves_the_sandbox_usable(sandbox, rot180_task):
    task = asyncio.create_task(sandbox.run(LOOP, rot180_task))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    vs = await asyncio.gather(*(sandbox.run(ROT180, rot180_task) for _ in range(4)))
    assert all(v.all_train_pass for v in vs)


async def test_survives_the_host_being_killed(fast_config, rot180_task):
    import signal

    from sandbox import Sandbox

    async with Sandbox(fast_config) as sb:
        assert (await sb.run(ROT180, rot180_task)).all_train_pass
        layers = sb.layers
        sb._host.proc.send_signal(signal.SIGKILL)  # the host, or bwrap around it
        await asyncio.sleep(0.2)
        verdicts = await asyncio.gather(*(sb.run(ROT180, rot180_task) for _ in range(6)))
        # Candidates caught in the crash run again on the new host, or are
        # reported as the worker's death, never as wrong.
        assert all(v.all_train_pass or v.train[0].error_type == "WorkerKilled" for v in verdicts)
        assert (await sb.run(ROT180, rot180_task)).all_train_pass
        assert sb.stats["host_restarts"] == 1 and sb.layers == layers


async def runs_caught_by_close(config, task, *, cancel: bool) -> list:
    """Results of looping programs, more than the workers, when the sandbox closes under them.

    Some are mid-exchange, some queued for a slot; with ``cancel`` each is then cancelled.
    """
    from sandbox import Sandbox

    sb = Sandbox(config)
    await sb.start()
    tasks = [asyncio.create_task(sb.run(LOOP, task)) for _ in range(sb.n_workers + 2)]
    await asyncio.sleep(0.2)
    await sb.close()
    if cancel:
        for t in tasks:
            t.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
    await sb.close()  # closing twice is harmless
    return results


async def test_runs_cancelled_after_close_raise_only_cancelled(fast_config, rot180_task):
    results = await runs_caught_by_close(fast_config, rot180_task, cancel=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results


async def test_closing_under_running_programs_ends_them_with_a_sandbox_error(fast_config, rot180_task):
    from sandbox import SandboxError

    results = await runs_caught_by_close(fast_config, rot180_task, cancel=False)
    # Never an internal error: a verdict (the program died with the host) or a clear SandboxError.
    assert all(isinstance(r, SandboxError) or not r.all_train_pass for r in results), results
