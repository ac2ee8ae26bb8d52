"""Sandbox throughput on fixed mixes of ARC programs and real ARC tasks.

Three ways of running the same candidates with the same number of worker processes:

(a) unprotected: plain forked processes that ``exec`` each program in-process
    and compare there. Each process gets an equal static share of the
    candidates up front, so there is no per-candidate IPC at all: this is the
    upper bound an unprotected harness could reach, not a strawman. Infinite
    loops are stopped with SIGALRM at the same pair limit (a harness without
    isolation can do nothing better; a loop that ignores signals would hang it,
    so such loops are not in the mix).
(b) one ``python`` subprocess per candidate (importing numpy, running all pairs,
    printing JSON), ``workers`` at a time; a small sample, it is slow.
(c) arcsynth's sandbox, all layers on, fed from asyncio; every program runs in
    its own child forked from a clean zygote (see sandbox.worker).
(a) and (c) are each run twice, alternating, and the faster run of each counts.

The synthetic mix (weights out of 100, drawn with a seeded RNG over real arc1 tasks):
  correct solutions of their task 5 (rot180, flips, transpose, tiling, recolouring);
  numpy transforms that are wrong for the task drawn 33 (rot90, flips, transpose,
  colour map, crop to bounding box, tiling, per-column gravity);
  pure-Python flood fill of enclosed background 14; pure-Python connected
  components keeping the largest object 12; scipy.ndimage.label version 6;
  pure-Python majority-colour scan 8; wrong-shaped answer 6;
  exceptions 16 (IndexError, ValueError from a bad reshape, SyntaxError, returns
  None, NameError).
The loop mix adds 2 more parts of ``while True`` loops.

The real-program mixes draw from ``bench_programs/``: human-style solvers of
real arc1 training tasks (one file per task, named after it), each correct on
every pair of its task (a test checks this in the sandbox). They are written
the way people write solvers: a pasted header of grid helpers (a grid class
with dunder methods), or a whole toolkit of pure-Python functions over tuples
and frozensets with closures, dataclasses and scene classes, then a short
solver; some use numpy. One mix holds those under 10 KB, the other those of
10-40 KB, whose compile time is a large part of their cost.

After the smaller real programs, a floor: an empty program on the same tasks, which
costs what running any program in a fresh process costs, and the ratio that leaves
room for on those programs. The last line printed is the smallest
sandbox/unprotected ratio over the mixes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HEADER = "import numpy as np\n"

SOLUTIONS = {
    "3c9b0459": "def transform(grid):\n    return np.rot90(grid, 2)\n",
    "6150a2bd": "def transform(grid):\n    return grid[::-1, ::-1].copy()\n",
    "67a3c6ac": "def transform(grid):\n    return np.fliplr(grid)\n",
    "68b16354": "def transform(grid):\n    return [list(row) for row in grid[::-1]]\n",
    "74dd1130": "def transform(grid):\n    return grid.T.copy()\n",
    "a416b8f3": "def transform(grid):\n    return np.hstack([grid, grid])\n",
    "c8f0f002": "def transform(grid):\n    out = grid.copy()\n    out[out == 7] = 5\n    return out\n",
    "d511f180": "def transform(grid):\n    out = grid.copy()\n    out[grid == 5] = 8\n    out[grid == 8] = 5\n    return out\n",
}

NUMPY_WRONG = [
    "def transform(grid):\n    return np.rot90(grid)\n",
    "def transform(grid):\n    return np.flipud(grid)\n",
    "def transform(grid):\n    return grid.T\n",
    "def transform(grid):\n    lut = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 9])\n    return lut[grid]\n",
    "def transform(grid):\n    ys, xs = np.nonzero(grid)\n    if len(ys) == 0:\n        return grid\n"
    "    return grid[ys.min():ys.max() + 1, xs.min():xs.max() + 1]\n",
    "def transform(grid):\n    h, w = grid.shape\n    if h * 2 > 30 or w * 2 > 30:\n        return grid\n    return np.tile(grid, (2, 2))\n",
    "def transform(grid):\n    out = np.zeros_like(grid)\n    for c in range(grid.shape[1]):\n        col = grid[:, c]\n"
    "        vals = col[col != 0]\n        if len(vals):\n            out[-len(vals):, c] = vals\n    return out\n",
]

FLOOD_FILL = """from collections import deque

def transform(grid):
    h, w = grid.shape
    g = grid.tolist()
    seen = [[False] * w for _ in range(h)]
    q = deque()
    for r in range(h):
        for c in range(w):
            if (r in (0, h - 1) or c in (0, w - 1)) and g[r][c] == 0:
                seen[r][c] = True
                q.append((r, c))
    while q:
        r, c = q.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and not seen[nr][nc] and g[nr][nc] == 0:
                seen[nr][nc] = True
                q.append((nr, nc))
    for r in range(h):
        for c in range(w):
            if g[r][c] == 0 and not seen[r][c]:
                g[r][c] = 4
    return g
"""

COMPONENTS = """def transform(grid):
    h, w = grid.shape
    g = grid.tolist()
    bg = max(range(10), key=lambda k: sum(row.count(k) for row in g))
    seen = set()
    best = []
    for r in range(h):
        for c in range(w):
            if g[r][c] == bg or (r, c) in seen:
                continue
            stack = [(r, c)]
            seen.add((r, c))
            comp = []
            while stack:
                y, x = stack.pop()
                comp.append((y, x))
                for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if 0 <= ny < h and 0 <= nx < w and (ny, nx) not in seen and g[ny][nx] != bg:
                        seen.add((ny, nx))
                        stack.append((ny, nx))
            if len(comp) > len(best):
                best = comp
    if not best:
        return g
    ys = [p[0] for p in best]
    xs = [p[1] for p in best]
    return [row[min(xs):max(xs) + 1] for row in g[min(ys):max(ys) + 1]]
"""

SCIPY_LABEL = """from scipy import ndimage

def transform(grid):
    labels, n = ndimage.label(grid != 0)
    if n == 0:
        return grid
    sizes = ndimage.sum(np.ones_like(grid), labels, range(1, n + 1))
    keep = int(np.argmax(sizes)) + 1
    out = np.where(labels == keep, grid, 0)
    return out
"""

MAJORITY = """from collections import Counter

def transform(grid):
    counts = Counter(v for row in grid.tolist() for v in row)
    colour = counts.most_common(1)[0][0]
    return [[colour if v != 0 else 0 for v in row] for row in grid.tolist()]
"""

WRONG_SHAPE = "def transform(grid):\n    return grid[:1, :1]\n"

ERRORS = [
    "def transform(grid):\n    return grid[[len(grid) + 5]]\n",
    "def transform(grid):\n    return grid.reshape(7, -1)\n",
    "def transform(grid)\n    return grid\n",
    "def transform(grid):\n    grid[0, 0] = 1\n",
    "def transform(grid):\n    return undefined_helper(grid)\n",
]

LOOP = "def transform(grid):\n    while True:\n        grid = grid + 0\n"

# (family, weight): the fixed mix described in the module docstring.
MIX = [("solution", 5), ("numpy", 33), ("flood", 14), ("components", 12), ("scipy", 6), ("majority", 8), ("shape", 6), ("error", 16)]
LOOP_WEIGHT = 2


def _tasks():
    train = _arc1_train()
    general = [train.get(i) for i in sorted(train.ids)[::25]][:40]
    solved = {k: train.get(k) for k in SOLUTIONS}
    return general, solved


def make_mix(n: int, seed: int, *, loops: bool):
    """``n`` (source, task) candidates from the fixed mix."""
    general, solved = _tasks()
    rng = random.Random(seed)
    fams = MIX + ([("loop", LOOP_WEIGHT)] if loops else [])
    names = [f for f, _ in fams]
    weights = [w for _, w in fams]
    out = []
    for _ in range(n):
        fam = rng.choices(names, weights)[0]
        task = rng.choice(general)
        if fam == "solution":
            tid = rng.choice(sorted(SOLUTIONS))
            src, task = SOLUTIONS[tid], solved[tid]
        elif fam == "numpy":
            src = rng.choice(NUMPY_WRONG)
        elif fam == "flood":
            src = FLOOD_FILL
        elif fam == "components":
            src = COMPONENTS
        elif fam == "scipy":
            src = SCIPY_LABEL
        elif fam == "majority":
            src = MAJORITY
        elif fam == "shape":
            src = WRONG_SHAPE
        elif fam == "error":
            src = rng.choice(ERRORS)
        else:
            src = LOOP
        out.append((HEADER + src, task))
    return out


# ---- real programs: human-style solvers of real arc1 training tasks ----

REAL_DIR = Path(__file__).with_name("bench_programs")
# The real-program mixes, by program size in KiB: shared helper headers make
# most real solvers a few KB, and a pasted toolkit makes them tens of KB.
REAL_SIZES = ((0, 10), (10, 40))


def real_programs() -> dict[str, str]:
    """Source of every bench program, by file name ('<task id>.py'); each solves its arc1 training task."""
    return {p.name: p.read_text() for p in sorted(REAL_DIR.glob("*.py"))}


def real_task(name: str):
    """The arc1 (corrected ARC-AGI-1) training task a bench program solves, from its file name."""
    return _arc1_train().get(name.split(".")[0])


@functools.lru_cache(maxsize=1)
def _arc1_train():
    """The arc1 training tasks, loaded and validated once for every mix."""
    from arcsynth.datasets import load_dataset

    return load_dataset("arc1:train")


def make_real_mix(n: int, seed: int, *, lo_kb: float, hi_kb: float):
    """``n`` (source, task) candidates drawn from the real programs of ``lo_kb``..``hi_kb`` KiB, each on its own task."""
    progs = [(name, src) for name, src in real_programs().items() if lo_kb * 1024 <= len(src.encode()) < hi_kb * 1024]
    if not progs:
        raise ValueError(f"no bench program between {lo_kb} and {hi_kb} KB in {REAL_DIR}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name, src = rng.choice(progs)
        out.append((src, real_task(name)))
    return out


# ---- (a) unprotected in-process exec ----

_A_JOBS: list = []


class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm()


def _a_chunk(args) -> int:
    lo, hi, pair_timeout = args
    signal.signal(signal.SIGALRM, _on_alarm)
    passed = 0
    for source, task in _A_JOBS[lo:hi]:
        ok = True
        try:
            ns: dict = {}
            exec(compile(source, "<candidate>", "exec"), ns)
            fn = ns["transform"]
            for i, pair in enumerate(task.train + task.test):
                signal.setitimer(signal.ITIMER_REAL, pair_timeout)
                try:
                    out = fn(pair.input.astype(np.int64))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if i < len(task.train):
                    ok = ok and np.array_equal(np.asarray(out), pair.output)
        except BaseException:
            ok = False
        passed += ok
    return passed


def _a_init(jobs) -> None:
    global _A_JOBS
    _A_JOBS = jobs
    try:  # loaded before timing, as the sandbox's zygote has it loaded
        import scipy.ndimage  # noqa: F401
    except ImportError:
        pass


def _a_ready(_: int) -> int:
    time.sleep(0.05)  # long enough that every process takes one
    return os.getpid()


# One BLAS thread per process, as in the sandbox's workers: N processes each running a
# BLAS pool of N threads spend their time contending (on 16 cores, half the baseline's speed).
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_unprotected(jobs, workers: int, pair_timeout: float) -> tuple[float, int]:
    # Fresh interpreters (spawn), so numpy starts in them with the one-thread settings;
    # forks of this process would keep the BLAS threads it started with.
    ctx = multiprocessing.get_context("spawn")
    # Small chunks handed out as workers free up: one fixed share per worker would wait on
    # the share that drew the slow programs (with 16 workers, half the time).
    step = max(1, min(8, len(jobs) // (4 * workers)))
    chunks = [(i, min(i + step, len(jobs)), pair_timeout) for i in range(0, len(jobs), step)]
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)
    try:
        pool = ctx.Pool(workers, initializer=_a_init, initargs=(jobs,))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with pool:
        for _ in range(20):  # every process up (started and initialised) before timing
            if len(set(pool.map(_a_ready, range(workers), chunksize=1))) == workers:
                break
        t0 = time.perf_counter()
        passed = sum(pool.imap_unordered(_a_chunk, chunks))
        dt = time.perf_counter() - t0
    return dt, passed


# ---- (b) one subprocess per candidate ----

_RUNNER = """
import json, sys
import numpy as np
job = json.loads(sys.stdin.read())
ns = {}
outs = []
try:
    exec(compile(job["source"], "<candidate>", "exec"), ns)
    for g in job["inputs"]:
        try:
            outs.append(np.asarray(ns["transform"](np.array(g))).tolist())
        except Exception as e:
            outs.append(None)
except Exception:
    outs = [None] * len(job["inputs"])
print(json.dumps(outs))
"""


def _b_one(job) -> bool:
    source, task, timeout = job
    pairs = task.train + task.test
    payload = json.dumps({"source": source, "inputs": [p.input.tolist() for p in pairs]})
    try:
        proc = subprocess.run([sys.executable, "-c", _RUNNER], input=payload, capture_output=True, text=True, timeout=timeout)
        outs = json.loads(proc.stdout)
        return all(o is not None and np.array_equal(np.asarray(o), p.output) for o, p in zip(outs, task.train))
    except Exception:
        return False


def run_subprocess(jobs, workers: int, timeout: float) -> tuple[float, int]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        passed = sum(ex.map(_b_one, [(s, t, timeout) for s, t in jobs]))
    return time.perf_counter() - t0, passed


# ---- (c) the sandbox ----


async def _c_run(jobs, workers: int):
    from sandbox import Sandbox, SandboxConfig

    t0 = time.perf_counter()
    async with Sandbox(SandboxConfig(workers=workers)) as sb:
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        verdicts = await asyncio.gather(*(sb.run(s, t) for s, t in jobs))
        dt = time.perf_counter() - t0
        layers = sb.layers
        stats = sb.stats
    return dt, sum(v.all_train_pass for v in verdicts), startup, layers, stats


def run_sandbox(jobs, workers: int):
    return asyncio.run(_c_run(jobs, workers))


def _best_of_two(jobs, workers: int, pair_timeout: float):
    """(a) and (c) alternately, twice each; the faster run of each counts.

    Alternating keeps a burst of other work on the machine from deciding the ratio.
    """
    a_dt, a_pass = run_unprotected(jobs, workers, pair_timeout)
    c = run_sandbox(jobs, workers)
    a_dt = min(a_dt, run_unprotected(jobs, workers, pair_timeout)[0])
    c2 = run_sandbox(jobs, workers)
    if c2[0] < c[0]:
        c = c2
    return a_dt, a_pass, c


EMPTY_PROGRAM = "def transform(grid):\n    return grid\n"


def floor_line(mix, workers: int, a_rate: float) -> str:
    """What a fresh process per program costs by itself, and the ratio it leaves room for on ``mix``.

    An empty program on the same tasks pays for the fork, the hardening, the exit, the
    relay and the judging, and for nothing else; a real program costs at least that plus
    its own work, which takes ``workers / a_rate`` core-seconds in-process. Both are
    in core-milliseconds per program, every worker busy.
    """
    empty = [(EMPTY_PROGRAM, task) for _, task in mix]
    floor_s = min(run_sandbox(empty, workers)[0], run_sandbox(empty, workers)[0])
    floor_ms = 1000 * workers * floor_s / len(empty)
    own_ms = 1000 * workers / a_rate
    return (f"  floor: an empty program on these tasks costs {floor_ms:.1f} core-ms in the sandbox (fork, hardening, exit, "
            f"relay, judging); these programs take {own_ms:.1f} core-ms in-process, so one fresh process per program "
            f"leaves room for a ratio of at most {own_ms / (floor_ms + own_ms):.2f} here")


def main(n: int = 2000, workers: int = 0, seed: int = 0, n_real: int = 400) -> float:
    """Run the benchmark and print the figures; returns the smallest sandbox/unprotected ratio over the mixes."""
    from sandbox.config import DEFAULT_PAIR_TIMEOUT_S

    workers = workers or os.cpu_count() or 1
    jobs = make_mix(n, seed, loops=False)
    loop_jobs = make_mix(n, seed + 1, loops=True)
    n_loops = sum("while True" in s for s, _ in loop_jobs)
    b_jobs = jobs[: max(4 * workers, 8)]
    print(
        f"sandbox benchmark: {n} candidates per synthetic mix, {n_real} per real-program mix, "
        f"{workers} workers, seed {seed}, pair limit {DEFAULT_PAIR_TIMEOUT_S} s"
    )
    mixes = [("synthetic mix without loops", jobs), (f"synthetic mix with {n_loops} infinite loops ({100 * n_loops / n:.1f}%)", loop_jobs)]
    real_mixes = [make_real_mix(n_real, seed, lo_kb=lo, hi_kb=hi) for lo, hi in REAL_SIZES]
    for real in real_mixes:
        sizes = [len(s.encode()) / 1024 for s, _ in real]
        mixes.append((f"real correct programs, {min(sizes):.0f}-{max(sizes):.0f} KB ({len({s for s, _ in real})} programs)", real))
    smallest_real = real_mixes[0]  # REAL_SIZES goes from small to large

    ratios = []
    printed_header = False
    for name, mix in mixes:
        a_dt, a_pass, (c_dt, c_pass, startup, layers, stats) = _best_of_two(mix, workers, DEFAULT_PAIR_TIMEOUT_S)
        if not printed_header:
            print(f"sandbox layers: {', '.join(layers)}; startup {startup:.2f} s")
            printed_header = True
        a_rate, c_rate = len(mix) / a_dt, len(mix) / c_dt
        ratios.append(c_rate / a_rate)
        print(f"{name}:")
        print(f"  (a) unprotected exec      {a_rate:9.1f} programs/s  ({a_pass} passed)")
        if mix is jobs:
            b_dt, b_pass = run_subprocess(b_jobs, workers, 10.0)
            b_rate = len(b_jobs) / b_dt
            print(f"  (b) subprocess/candidate  {b_rate:9.1f} programs/s  (sample of {len(b_jobs)}, {b_pass} passed)")
        extra = f", {stats['timeouts']} timeouts" if stats["timeouts"] else ""
        print(f"  (c) arcsynth sandbox      {c_rate:9.1f} programs/s  ({c_pass} passed{extra}, each program in a fresh child process)")
        if mix is jobs:
            print(f"  sandbox / subprocess      {c_rate / b_rate:9.1f}x")
        print(f"  sandbox / unprotected     {c_rate / a_rate:9.2f}")
        if mix is smallest_real:
            print(floor_line(mix, workers, a_rate))
    ratio = min(ratios)
    print(f"sandbox/unprotected {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
