"""Time limits with the machine busy: two busy loops compete with the sandbox for the CPUs.

Users run the sandbox on machines whose cores also feed a model. The limits count
the program's own CPU time, so a busy machine must change no verdict: a correct
program that needs a good part of its limit still passes, a loop is still a
timeout (never an error), and only a program that sleeps reaches the wall-clock
backstop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import pytest_asyncio

from sandbox import Sandbox

# About 0.15 s of CPU per pair (a third of the 0.5 s pair limit), measured by
# the program itself so the test does not depend on this machine's speed.
BUSY_CORRECT = """
import time
import numpy as np

def transform(grid):
    t = time.process_time()
    while time.process_time() - t < 0.15:
        pass
    return np.rot90(grid, 2)
"""
LOOP = "def transform(grid):\n    while True:\n        pass\n"
SLEEPER = "import time\n\ndef transform(grid):\n    time.sleep(60)\n    return grid\n"


@pytest.fixture(scope="module")
def busy_loops():
    """Two processes spinning on the CPU for the module's tests; ended by pid."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded_sandbox(busy_loops, fast_config):
    async with Sandbox(fast_config) as sb:
        yield sb


@pytest.mark.asyncio(loop_scope="module")
async def test_correct_programs_near_their_limit_pass_under_load(loaded_sandbox, rot180_task):
    import asyncio

    verdicts = await asyncio.gather(*(loaded_sandbox.run(BUSY_CORRECT, rot180_task, check_test=True) for _ in range(6)))
    for v in verdicts:
        assert v.all_train_pass, [(p.status, p.error) for p in v.train]
        assert all(p.status == "pass" for p in v.test)
        # What was measured is CPU time: near 0.15 s per pair, however long the wall clock ran.
        assert all(0.1 < p.runtime_s < 0.5 for p in v.train)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_loop_is_a_timeout_under_load(loaded_sandbox, rot180_task):
    for _ in range(3):
        v = await loaded_sandbox.run(LOOP, rot180_task)
        assert v.train[0].status == "timeout" and v.train[0].error_type == "Timeout", v.train[0]
        assert "pair limit" in v.train[0].error
        assert all(p.status == "timeout" for p in v.train + v.test)
    v = await loaded_sandbox.run(BUSY_CORRECT, rot180_task)
    assert v.all_train_pass


@pytest.mark.asyncio(loop_scope="module")
async def test_a_sleeping_program_reaches_the_wall_clock_backstop(loaded_sandbox, rot180_task):
    v = await loaded_sandbox.run(SLEEPER, rot180_task)
    assert v.train[0].status == "timeout"
    assert "wall-clock" in v.train[0].error and "sleeps or blocks" in v.train[0].error
