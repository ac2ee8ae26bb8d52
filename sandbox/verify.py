"""The sandbox as the rest of arcsynth sees it: run a program on a task, get verdicts.

Comparison happens here, in the trusted process, on grids parsed from result
frames; expected outputs are never sent to a worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Iterable

import numpy as np

from arcsynth.grid import GridError, grids_equal, parse_grid
from arcsynth.task import Task
from sandbox import layers as L
from sandbox import protocol as P
from sandbox.config import SandboxConfig, SandboxUnavailable
from sandbox.pool import Exchange, Host, SandboxError, Worker, exchange
from sandbox.verdict import CandidateVerdict, PairVerdict

# A worker is replaced after this many candidates: it bounds the CPU-time rlimit
# (each candidate uses at most candidate_timeout_s) and any slow leak. At the
# measured ~1 ms per candidate one replacement fork every 500 costs < 2%.
MAX_CANDIDATES_PER_WORKER = 500
MAX_SOURCE_BYTES = 1 << 20
_HOST_START_TIMEOUT_S = 120.0

# Programs that reach for interpreter internals, or import anything but the
# modules offered to programs, retire their worker afterwards whatever the state
# check says: it compares the offered modules' namespaces, but a program holding
# frames, gc, ctypes or the worker's own modules can change what it does not see.
# Ordinary ARC programs never match, so this costs one fork for the rare ones.
_RISKY = re.compile(
    r"__|\b(ctypes|gc|sys|os|posix|signal|threading|_thread|builtins|importlib|inspect|atexit|weakref|"
    r"faulthandler|resource|socket|subprocess|multiprocessing|mmap|fcntl|exec|eval|compile|open|globals|"
    r"locals|vars|getattr|setattr|delattr|sandbox)\b|\bf_(back|globals|locals|builtins)|\b(gi|cr|ag|tb)_frame|"
    # private modules and attributes (numpy's internals are not watched)
    r"\._|\bimport[ \t]+_|\bimport[^\n#]*,[ \t]*_"
)
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\S+)[ \t]+import|import[ \t]+([^#;\n]+))", re.M)
_OFFERED = frozenset(
    "math cmath itertools collections functools copy heapq bisect re typing dataclasses operator statistics random "
    "string fractions decimal enum abc numbers array queue json time numpy scipy".split()
)


def _retires_worker(source: str) -> bool:
    if _RISKY.search(source):
        return True
    for m in _IMPORT.finditer(source):
        names = [m.group(1)] if m.group(1) else [part.split()[0] for part in m.group(2).split(",") if part.strip()]
        if any(name.split(".")[0] not in _OFFERED for name in names):
            return True
    return False


class Sandbox:
    """A pool of hardened worker processes that runs candidate programs on tasks.

    Use as ``async with Sandbox(config) as sb: verdict = await sb.run(source, task)``.
    ``disable_layers`` leaves named layers off ('bwrap', 'landlock', 'seccomp'),
    for a kernel that misbehaves or to test the degraded paths.
    """

    def __init__(self, config: SandboxConfig | None = None, *, disable_layers: Iterable[str] = ()):
        self.config = config or SandboxConfig()
        self.disable_layers = set(disable_layers)
        unknown = self.disable_layers - {"bwrap", "landlock", "seccomp"}
        if unknown:
            raise ValueError(f"disable_layers: unknown layer(s) {sorted(unknown)}; known: bwrap, landlock, seccomp")
        self.n_workers = self.config.workers or os.cpu_count() or 1
        self.unavailable: dict[str, str] = {}
        """Why a layer is not active, by layer name (filled by start)."""
        self._layers: list[str] = []
        self._host: Host | None = None
        self._workers: list[Worker | None] = []
        self._slots: asyncio.Queue[int] | None = None
        self._abandoned: list[Worker] = []
        self._t_start = 0.0
        self._stats = {"candidates": 0, "pairs": 0, "rechecks": 0, "timeouts": 0, "crashes": 0, "respawns": 0, "busy_s": 0.0}

    # ---- lifecycle ----

    @property
    def layers(self) -> list[str]:
        """The active isolation layers (empty before start)."""
        return list(self._layers)

    async def start(self) -> None:
        """Start the host and the workers; raises SandboxUnavailable without the minimum isolation."""
        if self._host is not None:
            return
        cfg = self.config
        spec = {
            "memory_mb": cfg.memory_mb,
            "cpu_s": int(MAX_CANDIDATES_PER_WORKER * cfg.candidate_timeout_s) + 10,
            "seccomp": "seccomp" not in self.disable_layers,
            "landlock": "landlock" not in self.disable_layers,
            "read_paths": L.library_paths(),
            "uid_base": L.UID_BASE,
        }

        def argv(prefix: list[str]):
            return lambda fd: prefix + L.host_argv(json.dumps(dict(spec, ctrl_fd=fd)))

        host = None
        used_bwrap = False
        if cfg.bubblewrap and "bwrap" not in self.disable_layers:
            bwrap = L.find_bwrap()
            if bwrap is None:
                self.unavailable["bwrap"] = "bwrap is not installed (apt-get install bubblewrap)"
            else:
                try:
                    host = await Host.launch(argv(L.bwrap_argv(bwrap)), L.CLEAN_ENV, _HOST_START_TIMEOUT_S)
                    used_bwrap = True
                except SandboxError as e:
                    self.unavailable["bwrap"] = f"bwrap is installed but failed here: {e}"
        else:
            self.unavailable["bwrap"] = "turned off by configuration"
        if host is None:
            host = await Host.launch(argv([]), L.CLEAN_ENV, _HOST_START_TIMEOUT_S)

        hello = host.hello
        for name, why in hello.get("errors", {}).items():
            self.unavailable[name] = why
        for name in ("landlock", "seccomp"):
            if name in self.disable_layers:
                self.unavailable[name] = "turned off by the caller"
        found = set(hello.get("layers", [])) | {"process", "clean-env"}
        if used_bwrap:
            found.add("bwrap")
        if hello.get("fatal"):
            found &= {"process", "clean-env", "bwrap"}
            self.unavailable["workers"] = str(hello["fatal"])
        layers = [n for n in L.KNOWN_LAYERS if n in found]
        lacking = L.missing(layers)
        if (lacking or hello.get("fatal")) and not cfg.unsafe:
            host.close()
            why = "; ".join(f"{k}: {v}" for k, v in self.unavailable.items()) or "no details"
            raise SandboxUnavailable(
                f"the sandbox needs at least {', '.join(str(' or '.join(m) if isinstance(m, tuple) else m) for m in L.MINIMUM)}; "
                f"missing here: {', '.join(lacking) or 'working workers'} ({why}). "
                "Install bubblewrap or use a kernel with Landlock/seccomp, or pass SandboxConfig(unsafe=True) "
                "to run without them (only for programs you would run on this machine yourself)."
            )
        if cfg.unsafe:
            layers.append("unsafe")
        self._layers = layers
        self._host = host
        self._workers = [None] * self.n_workers
        self._slots = asyncio.Queue()
        for i in range(self.n_workers):
            self._slots.put_nowait(i)
        try:
            for i in range(self.n_workers):
                self._workers[i] = await host.spawn(i, False)
        except BaseException:
            await self.close()
            raise
        self._t_start = time.perf_counter()

    async def close(self) -> None:
        host, self._host = self._host, None
        if host is None:
            return
        for w in self._workers + self._abandoned:
            if w is not None:
                w.close_fds()
        self._workers = []
        self._abandoned = []
        host.close()  # the host kills its workers when the control socket closes

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def stats(self) -> dict:
        """Candidates and pairs run, busy seconds, candidates/s since start, and replacement counts."""
        elapsed = time.perf_counter() - self._t_start if self._t_start else 0.0
        s = dict(self._stats)
        s["elapsed_s"] = elapsed
        s["candidates_per_s"] = s["candidates"] / elapsed if elapsed > 0 else 0.0
        s["workers"] = self.n_workers
        return s

    # ---- running programs ----

    async def run(self, source: str, task: Task, *, check_test: bool = False) -> CandidateVerdict:
        """Run ``source`` on every train and test input of ``task``.

        Train outputs are compared with the expected ones; test outputs are
        'unchecked' unless ``check_test`` and the task knows them.
        """
        if self._host is None or self._slots is None:
            raise RuntimeError("the sandbox is not started: use `async with Sandbox(...)` or `await sandbox.start()`")
        pairs = list(task.train) + list(task.test)
        inputs = [(p.input.shape[0], p.input.shape[1], p.input.tobytes()) for p in pairs]
        if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
            err = PairVerdict(status="error", error_type="SourceTooLarge", error=f"the program is over {MAX_SOURCE_BYTES} bytes")
            return self._candidate(task, [err] * len(pairs), check_test, rechecked=False)
        slot = await self._slots.get()
        try:
            ex = await self._exchange(slot, source, inputs, once=False)
            verdict = self._verdict(task, ex, check_test)
            if verdict.all_train_pass and self.config.recheck_passes:
                self._stats["rechecks"] += 1
                ex = await self._exchange(slot, source, inputs, once=True)
                fresh = self._verdict(task, ex, check_test)
                fresh.rechecked = fresh.all_train_pass
                verdict = fresh
        finally:
            self._slots.put_nowait(slot)
        self._stats["candidates"] += 1
        self._stats["pairs"] += len(pairs)
        return verdict

    async def _exchange(self, slot: int, source: str, inputs: list, *, once: bool) -> Exchange:
        host = self._host
        assert host is not None
        while self._abandoned:
            await host.kill(self._abandoned.pop())
        if once:
            # A fresh fork of the host, which never ran a program: nothing an
            # earlier candidate did can reach it. Its own uid, next to the slot's.
            w = await host.spawn(self.n_workers + slot, True)
        else:
            w = self._workers[slot]
            if w is None:
                w = await host.spawn(slot, False)
                self._workers[slot] = w
                self._stats["respawns"] += 1
        try:
            ex = await exchange(w, source, inputs, self.config.pair_timeout_s, self.config.candidate_timeout_s)
        except BaseException:
            # Cancelled mid-candidate: the worker may still be running it.
            if not once:
                self._workers[slot] = None
            self._abandoned.append(w)
            raise
        self._stats["busy_s"] += ex.elapsed
        retire = once or ex.outcome != "ok" or bool(ex.taint) or w.used >= MAX_CANDIDATES_PER_WORKER
        retire = retire or _retires_worker(source)
        if retire:
            if not once:
                self._workers[slot] = None
            if ex.outcome == "died":
                ex.detail = await host.kill(w)
                self._stats["crashes"] += 1
            else:
                self._stats["timeouts"] += ex.outcome == "timeout"
                try:
                    host.discard(w)
                except BlockingIOError:
                    self._abandoned.append(w)
        return ex

    # ---- verdicts ----

    def _verdict(self, task: Task, ex: Exchange, check_test: bool) -> CandidateVerdict:
        pairs = list(task.train) + list(task.test)
        n_train = len(task.train)
        out: list[PairVerdict] = []
        failed_at = len(ex.results)
        for i, pair in enumerate(pairs):
            expected = pair.output if (i < n_train or check_test) else None
            if i < failed_at:
                r = ex.results[i]
                if r.runtime > self.config.pair_timeout_s:
                    msg = f"took {r.runtime:.2f} s, over the {self.config.pair_timeout_s:g} s pair limit"
                    shape = tuple(expected.shape) if expected is not None else None
                    out.append(PairVerdict(status="timeout", error_type="Timeout", error=msg, expected_shape=shape, runtime_s=r.runtime))
                else:
                    out.append(_pair_verdict(r, expected))
            else:
                out.append(self._failure(ex, i, failed_at, expected))
        return self._candidate(task, out, check_test, rechecked=False)

    def _failure(self, ex: Exchange, i: int, failed_at: int, expected: np.ndarray | None) -> PairVerdict:
        shape = tuple(expected.shape) if expected is not None else None
        cfg = self.config
        if ex.outcome == "timeout":
            status, etype = "timeout", "Timeout"
            if i == failed_at:
                spent = ex.elapsed - sum(r.runtime for r in ex.results)
                limit = "the candidate limit" if ex.elapsed >= cfg.candidate_timeout_s * 0.99 else "the pair limit"
                msg = f"no result within {limit} ({cfg.pair_timeout_s:g} s per pair, {cfg.candidate_timeout_s:g} s per program)"
                return PairVerdict(status=status, error_type=etype, error=msg, expected_shape=shape, runtime_s=max(spent, 0.0))
        elif ex.outcome == "died":
            status, etype = "error", "Crashed"
            if i == failed_at:
                msg = f"the worker process {ex.detail or 'died'} while running this pair (os._exit, a signal or a crash)"
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

    def _candidate(self, task: Task, verdicts: list[PairVerdict], check_test: bool, *, rechecked: bool) -> CandidateVerdict:
        n = len(task.train)
        return CandidateVerdict.model_construct(
            train=verdicts[:n], test=verdicts[n:], isolation=list(self._layers), rechecked=rechecked
        )


def _pair_verdict(r: P.Result, expected: np.ndarray | None) -> PairVerdict:
    # model_construct: every value below is built here from parsed, typed data,
    # and validating a 900-cell output list again costs more than the comparison.
    make = PairVerdict.model_construct
    shape = tuple(expected.shape) if expected is not None else None
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


def verify_program(source: str, task: Task, config: SandboxConfig | None = None, *, check_test: bool = True) -> CandidateVerdict:
    """Run one program on one task in a sandbox of its own (synchronous; starts and stops the sandbox)."""

    async def go() -> CandidateVerdict:
        async with Sandbox(config or SandboxConfig(workers=1)) as sb:
            return await sb.run(source, task, check_test=check_test)

    return asyncio.run(go())
