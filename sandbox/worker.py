"""Workers: a clean zygote per slot, and one fresh child process per candidate.

Runs in processes forked from the sandbox host, never in the trusted process.

The trusted side talks to a *zygote*: a fork of the pre-warmed host that never
runs candidate code. For each request the zygote hands the program and its
inputs to a child forked from its own untouched state, which hardens itself
(rlimits, its own uid, Landlock, seccomp) and runs that one program. So:

- nothing a program does (patching numpy, audit hooks, timers, swapped
  ``sys.modules`` entries, a memory hog) outlives its candidate: the next one
  runs in a new copy of the clean snapshot, whatever the source text says;
- a program never holds the pipes to the trusted process, nor the request's
  nonce, nor any later request: the child gets a private pipe with its own
  request on it and writes its results to another private pipe;
- the zygote, not the program, writes the frames the trusted side reads: it
  parses each of the child's frames strictly, re-encodes it under the
  request's nonce, and turns a child that died or wrote garbage into an error
  for that pair only. A program can therefore speak for its own pairs, which
  it could anyway by returning a grid, and for nothing else.

Nothing here decides a verdict: the trusted side parses and compares.
"""

from __future__ import annotations

import builtins
import ctypes
import fcntl
import itertools
import linecache
import os
import random
import resource
import select
import signal
import struct
import sys
import termios
import time
import traceback
import types

import numpy as np

from sandbox import cells as C
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



# ---- hardening of a candidate's child, in this order ----

_libc = ctypes.CDLL(None, use_errno=True)


def _cpu_clock(pid: int) -> int | None:
    """The CPU-time clock id of process ``pid`` (clock_getcpuclockid), or None."""
    clk = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clk)) != 0:
        return None
    return clk.value


def _cpu_seconds(clock: int | None) -> float:
    try:
        return time.clock_gettime(clock) if clock is not None else 0.0
    except OSError:  # the process is gone
        return 0.0
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


def _close_fds_except(keep: set[int]) -> None:
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


def harden(
    spec: dict,
    *,
    uid: int | None,
    ruleset_fd: int | None,
    keep_fds: tuple[int, ...],
    close_fds: tuple[int, ...] | None = None,
    prepared: seccomp.Prepared | None = None,
) -> list[str]:
    """Apply the layers named in ``spec``; returns the names of those applied.

    ``close_fds``: the descriptors to close when the caller knows them all (a
    zygote's child), else every descriptor but ``keep_fds`` is closed.
    ``prepared``: a seccomp filter built before the fork.
    Raises on any failure: a process that could not harden itself must not run code.
    """
    applied = ["process"]
    parent = os.getppid()
    # Die with the zygote (which dies with the host, which dies with the
    # trusted process); seccomp then forbids undoing this.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)  # the parent died before the line above
    # Not dumpable: no other process of the same uid may open this one's
    # /proc files (memory, fds) or trace it.
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a zygote set these before the fork
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # The zygote's pipes to the trusted process go first of all.
    if close_fds is not None:
        for fd in close_fds:
            os.close(fd)
    else:
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        keep = {0, 1, 2, *keep_fds}
        if ruleset_fd is not None:
            keep.add(ruleset_fd)
        _close_fds_except(keep)
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
        # A credential change clears both the parent-death signal and the
        # non-dumpable flag: set them again, or this process would outlive
        # its parent (and seccomp would then stop it from fixing that).
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(0)
        applied.append("uid")
    if spec.get("landlock") and ruleset_fd is not None:
        seccomp.set_no_new_privs()
        landlock.restrict_self(ruleset_fd)
        os.close(ruleset_fd)
        applied.append("landlock")
    elif ruleset_fd is not None:
        os.close(ruleset_fd)
    if spec.get("seccomp"):
        if prepared is not None:
            prepared.install(os.getpid())
        else:
            seccomp.install(os.getpid())
        applied.append("seccomp")
    return applied


# ---- turning a return value into cells, by value ----

# Exact types accepted as a cell: Python's int and numpy's integer scalars.
# bool and numpy.bool_ are not integers here, and subclasses are not accepted,
# so no method a program defines runs while its output is read.
_INT_TYPES = frozenset(
    [int] + [t for t in {np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                          np.intc, np.uintc, np.intp, np.uintp, np.longlong, np.ulonglong}]
)
# Bound now, from types a program cannot change (ndarray's methods are C slots).
_nd_min = np.ndarray.min
_nd_max = np.ndarray.max
_nd_tobytes = np.ndarray.tobytes
_nd_astype = np.ndarray.astype
_nd_tolist = np.ndarray.tolist
_np_array = np.array
_list_copy = list.copy
_tuple_iter = tuple.__iter__
_chain = itertools.chain.from_iterable


def _items(seq: object) -> list | None:
    """The items of a list or tuple as stored, or None for anything else.

    A subclass's ``__iter__``/``__getitem__``/``__len__`` are never called:
    the items come straight from the underlying storage.
    """
    t = type(seq)
    if issubclass(t, list):
        return _list_copy(seq)  # type: ignore[arg-type]
    if issubclass(t, tuple):
        return list(_tuple_iter(seq))  # type: ignore[arg-type]
    return None


def _cells(out: object) -> tuple[int, int, bytes] | str:
    """Strictly convert a return value to (h, w, cells), or a reason it is invalid.

    The same rules as ``arcsynth.grid.parse_grid``; the trusted side checks again.
    """
    t = type(out)
    if t is np.ndarray:
        if out.ndim != 2:  # type: ignore[union-attr]
            return f"expected a 2-D grid, got an array with {out.ndim} dimension(s)"  # type: ignore[union-attr]
        dtype = out.dtype  # type: ignore[union-attr]
        if dtype.kind not in "iu":
            return f"expected integer cells, got dtype {dtype}"
        h, w = out.shape  # type: ignore[union-attr]
        if not (1 <= h <= P.MAX_SIDE and 1 <= w <= P.MAX_SIDE):
            return f"grid is {h}x{w}; each side must be 1..{P.MAX_SIDE}"
        lo, hi = int(_nd_min(out)), int(_nd_max(out))
        if lo < 0 or hi > 9:
            return f"cell value {lo if lo < 0 else hi} is outside 0..9"
        return h, w, _nd_tobytes(_nd_astype(out, np.uint8))
    if issubclass(t, np.ndarray):
        return (
            f"expected a plain numpy array or a list of lists, got {t.__module__}.{t.__qualname__} "
            "(an ndarray subclass); return np.asarray(...) or .tolist()"
        )
    rows = _items(out)
    if rows is None:
        return f"expected a numpy array or a list of lists, got {t.__name__}"
    h = len(rows)
    if h == 0:
        return "grid has no rows"
    if h > P.MAX_SIDE:
        return f"grid has {h} rows; each side must be 1..{P.MAX_SIDE}"
    grid = []
    for r, row in enumerate(rows):
        if type(row) is np.ndarray:
            # `[row[::-1] for row in grid]` over an array input: a list of 1-D integer
            # arrays, converted by value (exact type only, so no overridden method runs).
            if row.ndim != 1 or row.dtype.kind not in "iu":  # type: ignore[union-attr]
                return f"row {r} is an array of {row.ndim} dimension(s) and dtype {row.dtype}, not a row of integers"  # type: ignore[union-attr]
            items = _nd_tolist(row)
        else:
            items = _items(row)
        if items is None:
            return f"row {r} is {type(row).__name__}, not a list"
        grid.append(items)
    width = len(grid[0])
    if not 1 <= width <= P.MAX_SIDE:
        return f"grid is {h}x{width}; each side must be 1..{P.MAX_SIDE}"
    for r, items in enumerate(grid):
        if len(items) != width:
            return f"grid is not rectangular: row 0 has {width} cells, row {r} has {len(items)}"
    # Fast path for the usual valid grid: only exact integer types, parsed by numpy in C.
    if set(map(type, _chain(grid))) <= _INT_TYPES:
        try:
            arr = _np_array(grid)
        except Exception:
            arr = None
        if arr is not None and type(arr) is np.ndarray and arr.dtype.kind in "iu" and arr.shape == (h, width):
            lo, hi = int(_nd_min(arr)), int(_nd_max(arr))
            if 0 <= lo and hi <= 9:
                return h, width, _nd_tobytes(_nd_astype(arr, np.uint8))
    flat = bytearray()
    for r, items in enumerate(grid):
        for c, cell in enumerate(items):
            ct = type(cell)
            if ct not in _INT_TYPES:
                return f"cell ({r},{c}) is {ct.__name__}, not an integer"
            v = int(cell)
            if not 0 <= v <= 9:
                return f"cell value {v} is outside 0..9"
            flat.append(v)
    return h, width, bytes(flat)


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


def run_candidate(rfd: int, wfd: int, source: str, npairs: int) -> None:
    """In a candidate's child: compile ``source``, then run ``transform`` on each input as it arrives.

    Inputs come one by one on ``rfd`` (two bytes of shape, then the cells);
    each pair's frame goes out on ``wfd`` as soon as it is computed, and the
    next input arrives only after that. The frames carry nonce 0: the child
    never learns the request's nonce. End of input ends the candidate.
    """
    fn = None
    # CPU time, not wall-clock time: a busy machine (a GPU box feeding its model)
    # stretches wall time several-fold, and a correct program must not time out
    # for it. The child is single-threaded (seccomp forbids threads).
    t0 = time.process_time()
    try:
        linecache.cache["<candidate>"] = (len(source), None, source.splitlines(True), "<candidate>")
        code = compile(source, "<candidate>", "exec")
        # A real module, registered under its name: @dataclass, enum, typing
        # and pickle look a class's module up in sys.modules. The child runs
        # this one program only, so the entry goes with it.
        module = types.ModuleType("__candidate__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__candidate__"] = module
        ns: dict = module.__dict__
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
        dt = time.process_time() - t0
        frames = [P.encode_failure(0, i, dt if i == 0 else 0.0, P.KIND_ERROR, etype, msg) for i in range(npairs)]
        frames.append(P.encode_end(0, npairs, ""))
        _write_all(wfd, b"".join(frames))
        return

    for i in range(npairs):
        shape = _read_exact(rfd, 2)
        if shape is None:
            return
        h, w = shape[0], shape[1]
        cells = _read_exact(rfd, h * w)
        if cells is None:
            return
        grid = np.frombuffer(bytes(cells), dtype=np.uint8).reshape(h, w).astype(np.int64)
        t0 = time.process_time()
        try:
            out = fn(grid)
            res = _cells(out)
            out = None
        except BaseException as e:
            dt = time.process_time() - t0
            frame = P.encode_failure(0, i, dt, P.KIND_ERROR, type(e).__name__, _describe(e))
        else:
            dt = time.process_time() - t0
            if isinstance(res, str):
                frame = P.encode_failure(0, i, dt, P.KIND_INVALID, "InvalidOutput", res)
            else:
                frame = P.encode_grid(0, i, dt, *res)
        _write_all(wfd, frame)
    _write_all(wfd, P.encode_end(0, npairs, ""))


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            return None
        got += k
    return buf


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


# ---- a candidate's child ----


def _child_main(spec: dict, uid: int | None, ruleset_fd: int | None, req_r: int, res_w: int, close_fds: tuple[int, ...], prepared: seccomp.Prepared | None) -> None:
    """In the fresh child: harden, read the program, run it on the inputs as they come, exit. Never returns."""
    try:
        harden(spec, uid=uid, ruleset_fd=ruleset_fd, keep_fds=(req_r, res_w), close_fds=close_fds, prepared=prepared)
        head = _read_exact(req_r, 4)
        body = None if head is None else _read_exact(req_r, int.from_bytes(head, "little"))
        if body is None:
            os._exit(0)
        _flush_s, npairs, source = P.decode_program(bytes(body))
        cell = P.is_cell_request(body)
        body = None
        # Same random state for every candidate: verdicts do not depend on
        # which process or session ran a program (hash() is fixed by the
        # host's PYTHONHASHSEED). A REPL's re-run cells see what they saw first.
        random.seed(0)
        np.random.seed(0)
        if cell:
            C.run_cells(req_r, res_w, source)
        else:
            run_candidate(req_r, res_w, source, npairs)
    except BaseException:
        pass
    os._exit(0)


class _Child:
    """A hardened child waiting for its request on a private pipe."""

    def __init__(self, z: _Zygote) -> None:
        req_r, self.req_w = os.pipe()
        self.res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # The zygote holds nothing else open (it closed the rest at start).
            _child_main(z.spec, z.uid, z.ruleset_fd, req_r, res_w, (z.rfd, z.wfd, self.req_w, self.res_r), z.prepared)
        os.close(req_r)
        os.close(res_w)
        self.pid = pid

    def status(self, *, kill: bool) -> str:
        """Reap the child (SIGKILL first when ``kill``); how it ended, or '' when it was killed here.

        Without ``kill`` this waits: the child closed its result pipe, so it is
        exiting, or it closed the pipe and kept running, which the trusted
        side's time limit ends by killing this zygote.
        """
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _, st = os.waitpid(self.pid, 0)
            ended = "" if kill else describe_status(st)
        except ChildProcessError:
            ended = ""
        for fd in (self.req_w, self.res_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.req_w = self.res_r = -1
        return ended


def describe_status(status: int) -> str:
    """How a process ended, from its wait status: 'was killed by SIGKILL', 'exited with status 1'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended (status {status})"


# How often the zygote looks at a running child's CPU time, and the grace past a
# limit before it kills: the child's own report (which the trusted side judges
# against the exact limit) normally arrives first; the kill is for loops.
_CPU_TICK_S = 0.02
_CPU_GRACE_S = 0.1


def _pipe_pending(fd: int) -> int:
    """Bytes written to a pipe and not yet read (FIONREAD works on either end); -1 when unknown."""
    if fd < 0:  # closed after its last input: ioctl would raise ValueError, which would end the zygote
        return -1
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return -1


def _relay(child: _Child, wfd: int, body: bytearray, nonce: int, flush_s: float, src_end: int, spans: list[tuple[int, int]],
           limits: tuple[float, float] = (0.0, 0.0), wall_factor: float = 0.0, cell: bool = False) -> None:
    """Hand the program and then each input to the child; forward its results under ``nonce``.

    Input i+1 goes to the child only once its frame for pair i is in, so a
    grid the child reports for a pair can only have been computed after that
    pair's input was given, as transform would have. Each frame is strictly
    parsed and re-encoded here (the child's carry nonce 0); frames are
    forwarded in one write per candidate, or sooner once ``flush_s`` passed
    since the last. A child that dies, breaks a rule or writes too much gets an
    error on the pair it was on and 'Skipped' after it; nothing else it wrote
    goes further.

    ``limits`` are the pair and program limits in seconds of the child's CPU
    time (0 = none): past one, the child is killed and the pair it was on is a
    timeout naming that limit. Compiling the program and running its module
    code count towards the program limit only: pair 0's window opens when the
    child has taken its input, which it reads once the program is loaded.
    ``wall_factor`` times a limit in wall-clock time is the backstop for a
    program that sleeps or blocks (its CPU clock barely moves); the trusted
    side's own deadline lies beyond it, for a worker that hangs.

    ``cell``: a REPL cell request (``sandbox.cells``), whose child may also send
    its captured output as text frames ahead of its one result, up to
    ``cells.MAX_CELL_TEXT`` bytes; from a program they break the protocol.
    """
    npairs = len(spans)
    pair_cpu, program_cpu = limits
    clock = _cpu_clock(child.pid) if (pair_cpu or program_cpu) else None
    over = ""
    buf = bytearray()
    pending: list[bytes] = []
    got = given = 0
    text_bytes = 0
    ended = False
    problem = ""
    last_flush = time.perf_counter()

    def give() -> None:
        nonlocal given
        try:
            if given < npairs:
                a, b = spans[given]
                _write_all(child.req_w, view[a:b])
                given += 1
            if given == npairs and child.req_w >= 0:
                os.close(child.req_w)
                child.req_w = -1
        except OSError:
            pass  # the child is gone; its status tells how

    # Slices of one buffer, never copies: the request is zeroed afterwards, and
    # a copy freed on the heap would still be readable by the next child.
    view = memoryview(body)
    try:
        _write_all(child.req_w, src_end.to_bytes(4, "little"))
        _write_all(child.req_w, view[:src_end])
    except OSError:
        pass
    cpu_start = pair_start = _cpu_seconds(clock)
    wall_start = pair_wall_start = time.perf_counter()
    loaded = False  # the child took input 0, so compiling and module code are behind it
    give()
    while not ended and not problem:
        if clock is not None:
            ready, _, _ = select.select([child.res_r], [], [], _CPU_TICK_S)
            if not ready:
                now_cpu = _cpu_seconds(clock)
                now = time.perf_counter()
                if not loaded and given and _pipe_pending(child.req_w) == 0:
                    loaded = True
                    pair_start, pair_wall_start = now_cpu, now
                if program_cpu and now_cpu - cpu_start > program_cpu + _CPU_GRACE_S:
                    over = f"used more than {program_cpu:g} s of CPU time in all (program limit {program_cpu:g} s CPU)"
                    break
                if loaded and pair_cpu and now_cpu - pair_start > pair_cpu + _CPU_GRACE_S:
                    over = f"used more than {pair_cpu:g} s of CPU time on this pair (pair limit {pair_cpu:g} s CPU)"
                    break
                if wall_factor and program_cpu and now - wall_start > program_cpu * wall_factor:
                    over = (f"ran {now - wall_start:.1f} s of wall-clock time in all but used only {now_cpu - cpu_start:.2f} s "
                            f"of CPU time: it sleeps or blocks (wall-clock backstop {wall_factor:g}x the program limit "
                            f"{program_cpu:g} s CPU)")
                    break
                if loaded and wall_factor and pair_cpu and now - pair_wall_start > pair_cpu * wall_factor:
                    over = (f"ran {now - pair_wall_start:.1f} s of wall-clock time on this pair but used only "
                            f"{now_cpu - pair_start:.2f} s of CPU time: it sleeps or blocks (wall-clock backstop "
                            f"{wall_factor:g}x the pair limit {pair_cpu:g} s CPU)")
                    break
                # Results held back for batching go out while a slow pair runs,
                # so the trusted side sees progress.
                if pending and now - last_flush >= flush_s:
                    _write_all(wfd, b"".join(pending))
                    pending.clear()
                    last_flush = now
                continue
        try:
            data = os.read(child.res_r, 65536)
        except OSError:
            data = b""
        if not data:
            break
        buf += data
        while not ended:
            try:
                frame = P.split_frame(buf)
                if frame is None:
                    break
                r = P.parse_result(frame, 0)
            except P.ProtocolError as e:
                problem = str(e)
                break
            if r.kind == P.KIND_TEXT:
                text_bytes += len(r.message.encode("utf-8"))
                if not cell or r.index != got or got >= npairs or text_bytes > C.MAX_CELL_TEXT:
                    problem = "a text frame where none may be" if text_bytes <= C.MAX_CELL_TEXT else "too much text"
                    break
                pending += P.text_frames(nonce, got, r.message)
                continue
            if r.index != got or (r.kind == P.KIND_END) != (got == npairs):
                problem = "result frames out of order"
                break
            if r.kind == P.KIND_END:
                pending.append(P.encode_end(nonce, npairs, ""))
                ended = True
            elif r.kind == P.KIND_GRID:
                if got >= given:
                    problem = f"a grid for pair {got} before its input was given"
                    break
                assert r.shape is not None and r.cells is not None
                pending.append(P.encode_grid(nonce, got, r.runtime, r.shape[0], r.shape[1], r.cells))
                got += 1
            else:  # an error can only cost the candidate: accepted ahead of its input
                pending.append(P.encode_failure(nonce, got, r.runtime, r.kind, r.error_type, r.message))
                got += 1
            if got == given:
                pair_start = _cpu_seconds(clock) if clock is not None else 0.0
                pair_wall_start = time.perf_counter()
                loaded = True
                give()
        now = time.perf_counter()
        if pending and (ended or problem or now - last_flush >= flush_s):
            _write_all(wfd, b"".join(pending))
            pending.clear()
            last_flush = now
    ended_how = child.status(kill=ended or bool(problem) or bool(over))
    view.release()
    body[:] = bytes(len(body))  # no later child's memory holds this request
    if ended:
        if pending:
            _write_all(wfd, b"".join(pending))
        return
    frames = pending
    if over:
        etype, msg = "Timeout", f"the program {over}"
    elif problem:
        etype = "ProtocolError"
        msg = f"the program's result frames were invalid ({problem}); did the program write to the result channel?"
    elif ended_how == "was killed by SIGKILL":
        # Not at a time limit (that is `over`): the program killed itself, or
        # the kernel (out of memory) or another process outside the sandbox did.
        etype = "Crashed"
        msg = ("the program's process was killed by SIGKILL while running this pair, not at a time limit: "
               "by the program itself, the kernel (out of memory) or a process outside the sandbox")
    else:
        etype = "Crashed"
        msg = f"the program's process {ended_how or 'died'} while running this pair (os._exit, a signal or a crash)"
    for i in range(got, npairs):
        if i == got:
            frames.append(P.encode_failure(nonce, i, 0.0, P.KIND_ERROR, etype, msg))
        else:
            frames.append(P.encode_failure(nonce, i, 0.0, P.KIND_ERROR, "Skipped", f"not run: the program failed on pair {got} ({etype})"))
    frames.append(P.encode_end(nonce, npairs, ""))
    _write_all(wfd, b"".join(frames))


# ---- the zygote ----


class _Zygote:
    """What every child of a zygote starts from: its settings, its pipes to close, a prepared filter."""

    def __init__(self, spec: dict, rfd: int, wfd: int, uid: int | None, ruleset_fd: int | None) -> None:
        self.spec, self.rfd, self.wfd, self.uid = spec, rfd, wfd, uid
        self.ruleset_fd = ruleset_fd if spec.get("landlock") else None
        self.prepared = seccomp.Prepared() if spec.get("seccomp") else None


def serve(spec: dict, rfd: int, wfd: int, *, uid: int | None, ruleset_fd: int | None, once: bool) -> None:
    """The zygote loop: read a request, hand it to a fresh child, relay its results; exits on EOF.

    The next child is forked as soon as the last one is reaped, before its
    request arrives, so that its memory holds no request at all; each request
    is overwritten here once handed over.
    """
    z = _Zygote(spec, rfd, wfd, uid, ruleset_fd)
    limits = (float(spec.get("pair_cpu_s") or 0.0), float(spec.get("program_cpu_s") or 0.0))
    wall_factor = float(spec.get("wall_backstop") or 0.0)
    child = _Child(z)
    while True:
        head = _read_exact(rfd, 4)
        body = None if head is None else _read_exact(rfd, int.from_bytes(head, "little"))
        if body is None:
            child.status(kill=True)
            os._exit(0)
        nonce, flush_s, src_end, spans = P.request_layout(body)
        cell_limit = P.cell_limit(body)
        P.set_request_nonce(body, 0)
        if cell_limit is None:
            _relay(child, wfd, body, nonce, flush_s, src_end, spans, limits, wall_factor)
        else:
            # A cell has one limit for all it runs (its conversation's earlier cells included).
            _relay(child, wfd, body, nonce, flush_s, src_end, spans, (cell_limit, cell_limit), wall_factor, cell=True)
        if once:
            os._exit(0)
        child = _Child(z)


def main(spec: dict, rfd: int, wfd: int, *, uid: int | None, ruleset_fd: int | None, once: bool) -> None:
    """Entry point of a zygote freshly forked from the host; never returns."""
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        keep = {0, 1, 2, rfd, wfd}
        if ruleset_fd is not None:
            keep.add(ruleset_fd)
        _close_fds_except(keep)
        os.chdir("/")
        serve(spec, rfd, wfd, uid=uid, ruleset_fd=ruleset_fd, once=once)
    except BaseException:
        pass
    os._exit(0)
