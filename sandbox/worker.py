"""The worker: hardens itself once after the fork, then runs candidates one at a time.

Runs in a process forked from the sandbox host, never in the trusted process.
Nothing here decides a verdict: the worker only turns a program's return value
into a result frame; the trusted side parses and compares it.
"""

from __future__ import annotations

import builtins
import ctypes
import gc
import itertools
import linecache
import operator
import os
import resource
import signal
import sys
import time
import traceback

import numpy as np

from sandbox import landlock, seccomp
from sandbox import protocol as P

# Modules a program may import. They are imported by the host before any fork
# because a worker that switched to an unprivileged uid can no longer read an
# interpreter installed under a private home directory.
PRELOAD = (
    "math", "cmath", "itertools", "collections", "collections.abc", "functools", "copy", "heapq", "bisect",
    "re", "typing", "dataclasses", "operator", "statistics", "random", "string", "fractions", "decimal",
    "enum", "abc", "numbers", "array", "queue", "json", "time", "sys", "types",
    "numpy", "numpy.fft", "numpy.linalg", "numpy.random", "numpy.lib.stride_tricks", "numpy.ma",
    # Not for programs: loaded so that a program trying the network is stopped
    # by the isolation layers, not by a codec it cannot import (which would
    # make the network tests pass for the wrong reason).
    "encodings.idna",
)
OPTIONAL_PRELOAD = ("scipy", "scipy.ndimage")

# Module namespaces checked for changes after each candidate (see StateCheck),
# so a program that monkeypatches an allowed module (np.rot90 = ...) cannot
# change the next one's results: its worker is replaced. Programs importing anything else, or touching
# interpreter internals, retire their worker instead (see sandbox.verify).
_WATCHED = (
    "builtins", "math", "itertools", "collections", "functools", "copy", "heapq", "bisect", "re", "operator",
    "statistics", "random", "typing", "dataclasses", "string", "fractions", "numbers", "enum",
    "numpy", "numpy.fft", "numpy.linalg", "numpy.random", "numpy.lib.stride_tricks", "scipy.ndimage",
)
# Python-level classes are patchable too (Counter.most_common = ...); their
# dicts are watched in these modules only, where programs actually use them.
_WATCHED_CLASSES = ("collections", "functools", "dataclasses", "fractions", "statistics")
_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE
_MISSING = object()
_TEXT_TAIL = 300


def preload() -> list[str]:
    """Import everything a program may use; returns the optional modules present."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    present = []
    for name in OPTIONAL_PRELOAD:
        try:
            importlib.import_module(name)
            present.append(name)
        except ImportError:
            pass
    return present


# ---- hardening, applied once per worker, in this order ----

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def harden(spec: dict, *, uid: int | None, ruleset_fd: int | None, keep_fds: tuple[int, ...]) -> list[str]:
    """Apply the layers named in ``spec``; returns the names of those applied.

    Raises on any failure: a worker that could not harden itself must not run code.
    """
    applied = ["process"]
    # Die with the host; the host dies with the trusted process.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    keep = {0, 1, 2, *keep_fds}
    if ruleset_fd is not None:
        keep.add(ruleset_fd)
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc here: close by number
        open_fds = list(range(3, 1024))
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.chdir("/")

    mem = spec["memory_mb"] * 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_CPU, spec["cpu_s"]),
        (resource.RLIMIT_NOFILE, 32),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MEMLOCK, 0),
        (resource.RLIMIT_MSGQUEUE, 0),
        # Counted per uid and ignored for root, hence the uid switch below.
        (resource.RLIMIT_NPROC, 0),
    ]
    for res, val in limits:
        resource.setrlimit(res, (val, val))
    applied.append("rlimits")

    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        applied.append("uid")
    if spec.get("landlock") and ruleset_fd is not None:
        seccomp.set_no_new_privs()
        landlock.restrict_self(ruleset_fd)
        os.close(ruleset_fd)
        applied.append("landlock")
    if spec.get("seccomp"):
        seccomp.install(os.getpid())
        applied.append("seccomp")
    return applied


# ---- state check ----


def _snapshot() -> list[tuple[object, int, tuple, tuple]]:
    """For each watched namespace: the mapping, its size, its keys and its values."""
    snap = []
    seen: set[int] = set()

    def add(d) -> None:
        snap.append((d, len(d), tuple(d), tuple(d.values())))

    for name in _WATCHED:
        mod = sys.modules.get(name)
        if mod is None:
            continue
        add(mod.__dict__)
        if name not in _WATCHED_CLASSES:
            continue
        for v in list(mod.__dict__.values()):
            # Classes written in Python can be patched (Counter.most_common = ...).
            if isinstance(v, type) and not (v.__flags__ & _IMMUTABLE_TYPE) and id(v) not in seen:
                seen.add(id(v))
                add(v.__dict__)
    return snap


def _globals_state() -> tuple:
    # Signal handlers alone do nothing (no one may signal a worker but itself);
    # a pending timer would fire inside the next program.
    return (
        sys.getrecursionlimit(),
        sys.gettrace(),
        sys.getprofile(),
        sys.stdin,
        sys.stdout,
        sys.stderr,
        len(sys.modules),
        signal.getitimer(signal.ITIMER_REAL),
        signal.getitimer(signal.ITIMER_VIRTUAL),
        signal.getitimer(signal.ITIMER_PROF),
        tuple(sorted(np.geterr().items())),
        np.getbufsize(),
        gc.isenabled(),
    )


def _version_tag_views(dicts: list) -> list | None:
    """ctypes views of each dict's PEP 509 version tag, or None where unusable.

    CPython bumps a dict's ``ma_version_tag`` on every change. Reading it for
    the ~50 watched namespaces costs a few microseconds instead of comparing
    ~2,400 entries. The layout is checked on a scratch dict first; any other
    interpreter or layout falls back to the entry-by-entry comparison.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 14):
        return None
    offset = 3 * ctypes.sizeof(ctypes.c_void_p)  # ob_refcnt, ob_type, ma_used

    def view(d: dict):
        return ctypes.c_uint64.from_address(id(d) + offset)

    probe = {"a": 1}
    v = view(probe)
    seen = [v.value]
    probe["a"] = 2
    seen.append(v.value)
    probe["b"] = 3
    seen.append(v.value)
    del probe["a"]
    seen.append(v.value)
    if len(set(seen)) != 4 or 0 in seen:
        return None
    return [view(d) for d in dicts]


class StateCheck:
    """Detects a program that left changes behind for the next candidate."""

    def __init__(self) -> None:
        self.snap = _snapshot()
        self.state = _globals_state()
        # A class __dict__ is a read-only proxy; its version lives on the real dict.
        real = [d if type(d) is dict else gc.get_referents(d)[0] for d, *_ in self.snap]
        self.views = _version_tag_views(real) if all(type(d) is dict for d in real) else None
        self.tags = [v.value for v in self.views] if self.views is not None else None

    def tainted(self) -> str:
        if self.views is not None:
            if [v.value for v in self.views] != self.tags:
                return self._which() or "a watched namespace changed"
        else:
            name = self._which()
            if name:
                return name
        if _globals_state() != self.state:
            return "interpreter state (timers, numpy error mode, sys hooks) changed"
        return ""

    def _which(self) -> str:
        # Identity, not equality (a replacement could define a lying __eq__),
        # compared in C through map/all: ~50 ns per name.
        is_ = operator.is_
        for d, n, keys, values in self.snap:
            if len(d) != n or not all(map(is_, d.values(), values)) or not all(map(is_, d, keys)):
                changed = [str(k) for k, v in zip(keys, values) if d.get(k, _MISSING) is not v][:1]
                return f"{(changed or ['a name'])[0]:.40} was replaced, added or removed"
        return ""


# ---- running one candidate ----


def _cells(out: object) -> tuple[int, int, bytes] | str:
    """Strictly convert a return value to (h, w, cells), or a reason it is invalid.

    The same rules as ``arcsynth.grid.parse_grid``; the trusted side checks again.
    """
    if isinstance(out, np.ndarray):
        if out.ndim != 2:
            return f"expected a 2-D grid, got an array with {out.ndim} dimension(s)"
        if out.dtype.kind not in "iu":
            return f"expected integer cells, got dtype {out.dtype}"
        h, w = out.shape
        if not (1 <= h <= P.MAX_SIDE and 1 <= w <= P.MAX_SIDE):
            return f"grid is {h}x{w}; each side must be 1..{P.MAX_SIDE}"
        lo, hi = int(out.min()), int(out.max())
        if lo < 0 or hi > 9:
            return f"cell value {lo if lo < 0 else hi} is outside 0..9"
        return h, w, np.ascontiguousarray(out, dtype=np.uint8).tobytes()
    if isinstance(out, (list, tuple)):
        # Fast path for the usual valid grid: numpy parses it in C; the only
        # thing it would coerce silently is a bool among ints, checked in C too.
        try:
            if (
                1 <= len(out) <= P.MAX_SIDE
                and all(type(row) in (list, tuple) and 1 <= len(row) <= P.MAX_SIDE for row in out)
                and (arr := np.array(out)).dtype.kind in "iu"
                and arr.ndim == 2
                and bool not in set(map(type, itertools.chain.from_iterable(out)))
            ):
                lo, hi = int(arr.min()), int(arr.max())
                if 0 <= lo and hi <= 9:
                    return arr.shape[0], arr.shape[1], arr.astype(np.uint8).tobytes()
        except Exception:
            pass
        h = len(out)
        if h == 0:
            return "grid has no rows"
        if h > P.MAX_SIDE:
            return f"grid has {h} rows; each side must be 1..{P.MAX_SIDE}"
        width = None
        flat: list[int] = []
        for r, row in enumerate(out):
            if not isinstance(row, (list, tuple)):
                return f"row {r} is {type(row).__name__}, not a list"
            if width is None:
                width = len(row)
                if not 1 <= width <= P.MAX_SIDE:
                    return f"grid is {h}x{width}; each side must be 1..{P.MAX_SIDE}"
            elif len(row) != width:
                return f"grid is not rectangular: row 0 has {width} cells, row {r} has {len(row)}"
            for c, cell in enumerate(row):
                if type(cell) is not int and not isinstance(cell, np.integer):
                    return f"cell ({r},{c}) is {type(cell).__name__}, not an integer"
                v = int(cell)
                if not 0 <= v <= 9:
                    return f"cell value {v} is outside 0..9"
                flat.append(v)
        return h, len(flat) // h, bytes(flat)
    return f"expected a numpy array or a list of lists, got {type(out).__name__}"


def _describe(exc: BaseException) -> str:
    """The program's last frames and the message, as a traceback prints them.

    Built by hand: Python 3.11's own formatter parses each source line again to
    place carets, which costs more than most programs take to run.
    """
    try:
        frames = traceback.extract_tb(exc.__traceback__)[1:]  # drop the worker's own frame
        lines = []
        for f in frames[-3:]:
            lines.append(f'File "{f.filename}", line {f.lineno}, in {f.name}')
            if f.line:
                lines.append("    " + f.line.strip())
        lines.append("".join(traceback.format_exception_only(type(exc), exc)).strip())
        text = "\n".join(lines)
    except BaseException:  # a hostile __str__ must not break the report
        text = type(exc).__name__
    return text[-_TEXT_TAIL:]


class _NoTransform(Exception):
    pass


def run_candidate(
    wfd: int, nonce: int, source: str, inputs: list[tuple[int, int, bytes]], check: StateCheck | None, flush_s: float = 0.0
) -> str:
    """Run ``transform`` on each input and send one frame per pair, then an end frame.

    Frames are batched into one write (one wake-up of the trusted side per
    candidate) unless ``flush_s`` passed since the last write.
    Returns the taint reason ('' when this worker may run another candidate).
    """
    n = len(inputs)
    frames: list[bytes] = []
    taint = ""
    fn = None
    t0 = last_flush = time.perf_counter()
    try:
        linecache.cache["<candidate>"] = (len(source), None, source.splitlines(True), "<candidate>")
        code = compile(source, "<candidate>", "exec")
        ns: dict = {"__name__": "__candidate__", "__builtins__": builtins}
        exec(code, ns)
        fn = ns.get("transform")
        if not callable(fn):
            raise _NoTransform("the program defines no transform(grid) function")
    except BaseException as e:  # SystemExit and friends cost this candidate only
        etype = "MissingTransform" if isinstance(e, _NoTransform) else type(e).__name__
        if isinstance(e, SyntaxError):
            msg = f"line {e.lineno}: {e.msg}"
        elif isinstance(e, _NoTransform):
            msg = str(e)
        else:
            msg = _describe(e)
        if isinstance(e, MemoryError):
            taint = "MemoryError"
        dt = time.perf_counter() - t0
        for i in range(n):
            frames.append(P.encode_failure(nonce, i, dt if i == 0 else 0.0, P.KIND_ERROR, etype, msg))
        ns = None
        return _finish(wfd, nonce, n, check, taint, frames)

    for i, (h, w, cells) in enumerate(inputs):
        grid = np.frombuffer(cells, dtype=np.uint8).reshape(h, w).astype(np.int64)
        t0 = time.perf_counter()
        try:
            out = fn(grid)
            res = _cells(out)
            out = None
        except BaseException as e:
            dt = time.perf_counter() - t0
            if isinstance(e, MemoryError):
                taint = "MemoryError"
            frame = P.encode_failure(nonce, i, dt, P.KIND_ERROR, type(e).__name__, _describe(e))
        else:
            dt = time.perf_counter() - t0
            if isinstance(res, str):
                frame = P.encode_failure(nonce, i, dt, P.KIND_INVALID, "InvalidOutput", res)
            else:
                frame = P.encode_grid(nonce, i, dt, *res)
        frames.append(frame)
        now = time.perf_counter()
        if now - last_flush >= flush_s:
            os.write(wfd, b"".join(frames))
            frames.clear()
            last_flush = now
    fn = ns = None
    return _finish(wfd, nonce, n, check, taint, frames)


def _finish(wfd: int, nonce: int, n: int, check: StateCheck | None, taint: str, frames: list[bytes]) -> str:
    linecache.cache.pop("<candidate>", None)
    # Objects the program left in cycles are collected now, while nothing runs,
    # so their __del__ cannot fire inside the next candidate.
    gc.collect()
    if not taint and check is not None:
        try:
            taint = check.tainted()
        except BaseException as e:
            taint = f"state check failed: {type(e).__name__}"
    frames.append(P.encode_end(nonce, n, taint))
    os.write(wfd, b"".join(frames))
    return taint


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def serve(rfd: int, wfd: int, *, once: bool) -> None:
    """The worker loop: read a request, run it, repeat; exits on EOF."""
    # A one-shot worker exits after its candidate: nothing to protect, and the
    # snapshot would copy-on-write thousands of the host's pages.
    check = None if once else StateCheck()
    # The snapshot is long-lived; keep it out of every per-candidate collection.
    gc.freeze()
    while True:
        head = _read_exact(rfd, 4)
        if head is None:
            os._exit(0)
        body = _read_exact(rfd, int.from_bytes(head, "little"))
        if body is None:
            os._exit(0)
        nonce, flush_s, source, inputs = P.decode_request(body)
        taint = run_candidate(wfd, nonce, source, inputs, check, flush_s)
        if once or taint:
            os._exit(0)


def main(spec: dict, rfd: int, wfd: int, *, uid: int | None, ruleset_fd: int | None, once: bool) -> None:
    """Entry point in the freshly forked child; never returns."""
    try:
        harden(spec, uid=uid, ruleset_fd=ruleset_fd, keep_fds=(rfd, wfd))
        serve(rfd, wfd, once=once)
    except BaseException:
        pass
    os._exit(0)

