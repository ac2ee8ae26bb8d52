"""Time limits with the machine busy: two busy loops compete with the sandbox for the CPUs.

Users run the sandbox on machines whose cores also feed a model. The limits count
the program's own CPU time, so a busy machine must change no verdict: a correct
program that needs a good part of its limit still passes, a loop is still a
timeout (never an error), and only a program that sleeps reaches the wall-clock
backstop. A process killed from outside is reported as that, never as a
timeout, and never blamed on the next program.
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
ROT180_FAST = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n"
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


# ---- the program's own work is what is timed ----

# Module code that takes ~0.35 s of CPU (a table built at import, as real
# solvers do), then pairs of ~0.3 s each: loading is outside every pair's window.
HEAVY_MODULE = """
import time
import numpy as np

_t = time.process_time()
while time.process_time() - _t < 0.35:
    pass
TABLE = {i: i * i for i in range(1000)}

def transform(grid):
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    return np.rot90(grid, 2)
"""

# ~0.45 s of CPU on each of the task's pairs: every pair is within the 0.5 s
# pair limit, but the program goes over its 2 s program limit on pair 4.
STEADY = BUSY_CORRECT.replace("0.15", "0.45")


@pytest.mark.asyncio(loop_scope="module")
async def test_loading_a_program_is_outside_the_pair_window(loaded_sandbox, rot180_task):
    v = await loaded_sandbox.run(HEAVY_MODULE, rot180_task, check_test=True)
    assert v.all_train_pass, [(p.status, p.error) for p in v.train]
    assert 0.25 < v.train[0].runtime_s < 0.5  # pair 0's own time, without the module's 0.35 s


@pytest.mark.asyncio(loop_scope="module")
async def test_the_error_names_the_limit_that_fired(loaded_sandbox, rot180_task):
    loop = await loaded_sandbox.run(LOOP, rot180_task)
    assert "pair limit 0.5 s CPU" in loop.train[0].error, loop.train[0].error
    steady = await loaded_sandbox.run(STEADY, rot180_task, check_test=True)
    pairs = steady.train + steady.test
    assert len(pairs) == 5
    over = [p for p in pairs if p.error_type == "Timeout"]
    assert len(over) == 1 and "program limit 2 s" in over[0].error, [(p.status, p.error) for p in pairs]
    assert all(p.status == "pass" for p in pairs[: pairs.index(over[0])])
    assert all(p.status == "timeout" for p in pairs[pairs.index(over[0]):])


# ---- processes killed from outside the sandbox ----


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(status["Uid"].split()[1]) == uid:
            pids.append(int(name))
    return pids


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def _is_host_fork(pid: int) -> bool:
    """Whether ``pid`` runs the sandbox host's code: the host itself or a zygote forked from it."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    # bwrap's own processes (its outer process and the namespace's init) carry the host's
    # command line as arguments: they are not host forks, and killing one kills the sandbox.
    return any(b"sandbox.host" in a for a in argv) and os.path.basename(argv[0]) != b"bwrap"


def _program_children(sb) -> list[int]:
    """Pids (in this process's view) of the one-worker sandbox's candidate children: they run as its first worker uid."""
    return _pids_of_uid(sb._uids.base)


SLOW_CORRECT = "import time\nimport numpy as np\n\ndef transform(grid):\n    time.sleep(0.4)\n    return np.rot90(grid, 2)\n"
SLOW_SLEEPER = "import time\n\ndef transform(grid):\n    time.sleep(3)\n    return grid\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def one_worker(busy_loops, fast_config):
    if os.geteuid() != 0:
        pytest.skip("needs the per-worker uids the sandbox uses when started as root")
    async with Sandbox(fast_config.model_copy(update={"workers": 1})) as sb:
        yield sb


async def _wait_for(find, timeout: float = 10.0) -> list[int]:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := find()):
        assert asyncio.get_running_loop().time() < deadline, "no such process appeared"
        await asyncio.sleep(0.01)
    return found


@pytest.mark.asyncio(loop_scope="module")
async def test_a_program_killed_from_outside_is_an_error_that_says_so(one_worker, rot180_task):
    import asyncio

    run = asyncio.create_task(one_worker.run(SLOW_SLEEPER, rot180_task))
    await asyncio.sleep(0.5)
    for pid in await _wait_for(lambda: _program_children(one_worker)):
        os.kill(pid, signal.SIGKILL)
    v = await run
    first = v.train[0]
    assert first.status == "error" and first.error_type == "Crashed", first
    assert "SIGKILL" in first.error and "not at a time limit" in first.error and "outside the sandbox" in first.error
    assert all(p.status == "error" and p.error_type == "Skipped" for p in v.train[1:] + v.test)
    # The worker forks the next program's child as before.
    assert (await one_worker.run(BUSY_CORRECT, rot180_task)).all_train_pass


@pytest.mark.asyncio(loop_scope="module")
async def test_a_worker_killed_under_a_program_runs_it_again(one_worker, rot180_task):
    import asyncio

    before = one_worker.stats["respawns"]
    run = asyncio.create_task(one_worker.run(SLOW_CORRECT, rot180_task))
    await asyncio.sleep(0.2)
    zygotes = {_parent(pid) for pid in await _wait_for(lambda: _program_children(one_worker))}
    for pid in zygotes:
        os.kill(pid, signal.SIGKILL)
    v = await run
    assert v.all_train_pass, [(p.status, p.error) for p in v.train]  # not the program's fault: it ran again
    assert one_worker.stats["respawns"] == before + 1


@pytest.mark.asyncio(loop_scope="module")
async def test_a_worker_that_died_between_programs_costs_the_next_one_nothing(one_worker, rot180_task):
    import asyncio

    assert (await one_worker.run(ROT180_FAST, rot180_task)).all_train_pass
    # The idle worker holds its next child ready; kill the worker itself.
    zygotes = {_parent(pid) for pid in await _wait_for(lambda: _program_children(one_worker))}
    for pid in zygotes:
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    vs = await asyncio.gather(*(one_worker.run(ROT180_FAST, rot180_task) for _ in range(3)))
    assert all(v.all_train_pass for v in vs), [(p.status, p.error) for v in vs for p in v.train]


@pytest.mark.asyncio(loop_scope="module")
async def test_workers_killed_again_and_again_give_an_error_naming_the_signal(one_worker, rot180_task):
    import asyncio

    stop = False

    async def killer():
        while not stop:
            for pid in _program_children(one_worker):
                try:
                    zygote = _parent(pid)
                    # A child whose zygote just died is reparented (to bwrap's init, or the
                    # machine's): kill only a zygote, a fork of the host whose parent is the host.
                    if _is_host_fork(zygote) and _is_host_fork(_parent(zygote)):
                        os.kill(zygote, signal.SIGKILL)
                except (OSError, StopIteration, ValueError):
                    pass  # gone already
            await asyncio.sleep(0.005)

    k = asyncio.create_task(killer())
    try:
        v = await asyncio.wait_for(one_worker.run(SLOW_CORRECT, rot180_task), 120)
    finally:
        stop = True
        await k
    first = v.train[0]
    assert first.status == "error" and first.error_type == "WorkerKilled", first
    assert "killed by SIGKILL" in first.error and "workers in a row" in first.error and "not by the program" in first.error
    assert (await one_worker.run(ROT180_FAST, rot180_task)).all_train_pass
