"""The sandbox as the rest of arcsynth sees it: run a program on a task, get verdicts.

This module schedules programs on the workers (pipelined, with replacement);
``sandbox.judge`` turns what comes back into verdicts, in this process, against
expected outputs no worker ever sees.

Every program runs in its own child forked from a zygote that never ran one
(see ``sandbox.worker``), so a program cannot change what a later one sees:
there is no source screen and no re-run of passing programs in a fresh
process, because the first run already is one.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from typing import Iterable

from arcsynth.task import Task
from sandbox import layers as L
from sandbox import protocol as P
from sandbox.cells import NO_GRID, CellResult, cell_payload
from sandbox.config import WALL_BACKSTOP_FACTOR, SandboxConfig, SandboxUnavailable
from sandbox.judge import judge
from sandbox.pool import HANG_FACTOR, HANG_MARGIN_S, Exchange, Host, SandboxError, Worker, WorkerDied, collect, send
from sandbox.verdict import CandidateVerdict, PairVerdict

# A worker (the zygote that forks each candidate's child) is replaced after this
# many candidates, which bounds any slow leak in it; one more fork per 500.
MAX_CANDIDATES_PER_WORKER = 500
MAX_SOURCE_BYTES = 1 << 20
# Requests in flight per worker: the next candidate is already in the pipe when
# the current one finishes, so a worker never waits for the event loop.
PIPELINE_DEPTH = 2
_MAX_REQUEUES = 5
_HOST_START_TIMEOUT_S = 120.0

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
        self._spawn_locks: list[asyncio.Lock] = []
        self._restart_lock = asyncio.Lock()
        self._abandoned: list[Worker] = []
        self._uids: L.UidLease | None = None
        self._t_start = 0.0
        self._stats = {"candidates": 0, "pairs": 0, "timeouts": 0, "crashes": 0, "respawns": 0, "host_restarts": 0, "busy_s": 0.0, "cells": 0}

    # ---- lifecycle ----

    @property
    def layers(self) -> list[str]:
        """The active isolation layers (empty before start)."""
        return list(self._layers)

    async def start(self) -> None:
        """Start the host and the workers; raises SandboxUnavailable without the minimum isolation."""
        if self._host is not None:
            return
        # Worker uids of their own: another sandbox on this machine (another
        # run, another test process) never shares one (RLIMIT_NPROC and
        # signal permissions are per uid).
        self._uids = L.UidLease.acquire(self.n_workers + 1)
        try:
            host, layers = await self._launch()
        except BaseException:
            self._uids.release()
            self._uids = None
            raise
        self._layers = layers
        self._host = host
        self._workers = [None] * self.n_workers
        self._spawn_locks = [asyncio.Lock() for _ in range(self.n_workers)]
        self._restart_lock = asyncio.Lock()
        self._slots = asyncio.Queue()
        for _ in range(PIPELINE_DEPTH):
            for i in range(self.n_workers):
                self._slots.put_nowait(i)
        try:
            for i in range(self.n_workers):
                self._workers[i] = await host.spawn(i, False)
        except BaseException:
            await self.close()
            raise
        self._t_start = time.perf_counter()

    async def _launch(self) -> tuple[Host, list[str]]:
        """Start a host with the strongest layers that work here; the host and its layers."""
        cfg = self.config
        spec = {
            "memory_mb": cfg.memory_mb,
            # Per candidate's child: a backstop under the wall-clock limits, and
            # a bound on anything that outlives its candidate.
            "cpu_s": math.ceil(max(cfg.candidate_timeout_s, cfg.cell_timeout_s)) + 2,
            # What the zygote holds each child's CPU time to (sandbox.worker._relay).
            "pair_cpu_s": cfg.pair_timeout_s,
            "program_cpu_s": cfg.candidate_timeout_s,
            # ... and how much wall-clock time a program that sleeps or blocks gets.
            "wall_backstop": WALL_BACKSTOP_FACTOR,
            "seccomp": "seccomp" not in self.disable_layers,
            "landlock": "landlock" not in self.disable_layers,
            "read_paths": L.library_paths(),
            "uid_base": self._uids.base if self._uids is not None else L.UID_BASE,
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
                    host = await Host.launch(argv(L.bwrap_argv(bwrap)), L.host_env(), _HOST_START_TIMEOUT_S)
                    used_bwrap = True
                except SandboxError as e:
                    self.unavailable["bwrap"] = f"bwrap is installed but failed here: {e}"
        else:
            self.unavailable["bwrap"] = "turned off by configuration"
        if host is None:
            host = await Host.launch(argv([]), L.host_env(), _HOST_START_TIMEOUT_S)

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
        return host, layers

    async def _spawn(self, uid_offset: int, once: bool) -> Worker:
        """Fork a worker; if the host itself has died, start a new one first (once)."""
        host = self._host
        if host is None:
            raise SandboxError("the sandbox is closed")
        try:
            return await host.spawn(uid_offset, once)
        except SandboxError:
            await self._restart_host(host)
            assert self._host is not None
            return await self._host.spawn(uid_offset, once)

    def _host_lost(self) -> bool:
        return self._host is None or self._host.proc.poll() is not None

    async def _restart_host(self, failed: Host) -> None:
        # Long runs must survive the host being killed (OOM killer, a stray
        # signal). Its workers die with it; queued candidates are re-sent.
        async with self._restart_lock:
            if self._host is not failed:
                return  # someone else already restarted it
            for w in self._workers + self._abandoned:
                if w is not None:
                    w.mark_dead()
                    w.close_fds()
            self._workers = [None] * self.n_workers
            self._abandoned = []
            failed.close()
            host, layers = await self._launch()
            if layers != self._layers:
                host.close()
                self._host = None
                raise SandboxError(f"the sandbox host died and came back with other layers: {layers} instead of {self._layers}")
            self._host = host
            self._stats["host_restarts"] += 1

    async def close(self) -> None:
        host, self._host = self._host, None
        if host is None:
            return
        uids, self._uids = self._uids, None
        for w in self._workers + self._abandoned:
            if w is not None:
                w.close_fds()
        self._workers = []
        self._abandoned = []
        host.close()  # the host kills its workers when the control socket closes
        if uids is not None:
            uids.release()

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
            return self._candidate(task, [err] * len(pairs), rechecked=False)
        slot = await self._slots.get()
        try:
            ex = await self._exchange(slot, source, inputs)
            verdict = self._verdict(task, ex, check_test)
            # The run was in a fresh fork of the clean snapshot: re-running a
            # pass in another fresh process would repeat it exactly.
            verdict.rechecked = verdict.all_train_pass
        finally:
            self._slots.put_nowait(slot)
        self._stats["candidates"] += 1
        self._stats["pairs"] += len(pairs)
        return verdict

    async def run_cell(self, cells: list[str], grids: dict[str, list], *, max_output: int = 4000) -> CellResult:
        """Run the last of ``cells`` after re-running the others (a REPL call; see ``sandbox.cells``).

        ``grids`` are preloaded as globals: ``train_inputs``, ``train_outputs``,
        ``test_inputs`` (lists of grids as lists). The cell runs in a fresh
        hardened child like any program, within ``config.cell_timeout_s`` of
        CPU time for everything it runs; its output is cut to ``max_output``
        characters in the child.
        """
        if self._host is None or self._slots is None:
            raise RuntimeError("the sandbox is not started: use `async with Sandbox(...)` or `await sandbox.start()`")
        limit = self.config.cell_timeout_s
        payload = cell_payload(cells, grids, max_output)
        if len(payload.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
            return CellResult("error", error_type="SourceTooLarge", error=f"the cells are over {MAX_SOURCE_BYTES} bytes",
                              isolation=list(self._layers))
        slot = await self._slots.get()
        try:
            ex = await self._exchange(slot, payload, [(1, 1, b"\0")], cell_limit=limit)
        finally:
            self._slots.put_nowait(slot)
        self._stats["cells"] += 1
        return cell_result(ex, limit, self._layers)

    async def _pooled_worker(self, slot: int) -> Worker:
        async with self._spawn_locks[slot]:
            if self._host is None:  # close() empties the slots
                raise SandboxError("the sandbox was closed while the program waited to run")
            w = self._workers[slot]
            if w is None or w.dead:
                w = await self._spawn(slot, False)
                self._workers[slot] = w
                self._stats["respawns"] += 1
            return w

    async def _reap_abandoned(self) -> None:
        while self._abandoned and self._host is not None:
            w = self._abandoned.pop()
            try:
                await self._host.kill(w)
            except SandboxError:
                pass  # the host is gone, and its workers with it

    def _abandon(self, slot: int | None, w: Worker) -> None:
        """Give up a worker whose state is unknown (a run was cancelled mid-way)."""
        self._forget(slot, w)
        if self._host is None:
            w.close_fds()  # closed: the host killed its workers, and nothing reaps this list now
        else:
            self._abandoned.append(w)

    def _forget(self, slot: int | None, w: Worker) -> None:
        """Take ``w`` out of service; its slot is empty (or already gone, after close)."""
        w.mark_dead()
        # close() empties the slot list, and a cancellation may arrive after it.
        if slot is not None and slot < len(self._workers) and self._workers[slot] is w:
            self._workers[slot] = None

    async def _retire(self, slot: int | None, w: Worker, ex: Exchange) -> None:
        host = self._host
        # Candidates queued behind this one see the worker gone and go elsewhere.
        self._forget(slot, w)
        if host is None:  # closed under a running program: the host took its workers with it
            w.close_fds()
            ex.detail = ex.detail or "the sandbox was closed"
            return
        try:
            if ex.outcome == "died":
                self._stats["crashes"] += 1
                ex.detail = await host.kill(w)
                return
            self._stats["timeouts"] += ex.outcome == "timeout"
            host.discard(w)
        except BlockingIOError:
            self._abandoned.append(w)
        except SandboxError:
            # The host is gone, and its workers with it; the next spawn restarts it.
            ex.detail = ex.detail or "died with the sandbox host"

    async def _exchange(self, slot: int, source: str, inputs: list, cell_limit: float | None = None) -> Exchange:
        await self._reap_abandoned()
        cfg = self.config
        pair_limit, program_limit = (cfg.pair_timeout_s, cfg.candidate_timeout_s) if cell_limit is None else (cell_limit, cell_limit)
        # The request waits in the pipe while the program before it runs, which
        # may take up to the wall-clock backstop of its program limit.
        send_timeout = WALL_BACKSTOP_FACTOR * max(cfg.candidate_timeout_s, cfg.cell_timeout_s) * HANG_FACTOR + HANG_MARGIN_S + 1.0
        deaths: list[str] = []  # how the workers that died while trying to run this program ended
        for _attempt in range(_MAX_REQUEUES):
            w = await self._pooled_worker(slot)
            seq = w.take_seq()
            try:
                try:
                    nonce, npairs = await send(w, source, inputs, pair_limit, send_timeout, cell_limit)
                except WorkerDied:
                    if not w.dead:  # it died idle (killed from outside), or stopped reading
                        gone = Exchange([], "died")
                        await self._retire(slot, w, gone)
                        # Counted like a death under the program: if every worker goes this
                        # way, the error says how they ended, not that they were "replaced".
                        deaths.append(gone.detail or "died")
                    continue
                await w.wait_turn(seq)
                if w.dead:  # retired by the candidate before ours; our request went with it
                    continue
                ex = await collect(w, nonce, npairs, pair_limit, program_limit, WALL_BACKSTOP_FACTOR, cell=cell_limit is not None)
            except BaseException:
                # Cancelled: our request may still run and its results would
                # be read as someone else's, so this worker cannot be trusted.
                self._abandon(slot, w)
                raise
            self._stats["busy_s"] += ex.elapsed
            # A program's own crash ends its child, not the worker (see sandbox.worker).
            self._stats["crashes"] += any(r.error_type == "Crashed" for r in ex.results)
            # So does a program stopped at a CPU limit: the worker kills its child and goes on.
            self._stats["timeouts"] += any(r.error_type == "Timeout" for r in ex.results)
            if ex.outcome != "ok" or ex.taint or w.used >= MAX_CANDIDATES_PER_WORKER:
                await self._retire(slot, w, ex)
                if ex.outcome == "died":
                    # A program's crash ends only its own child, which the worker
                    # reports as this program's error; a worker that died was
                    # killed from outside (or with the host): not the program's
                    # doing, so it runs again on a fresh worker.
                    deaths.append(ex.detail or "died")
                    continue
            w.end_turn(seq)
            return ex
        if deaths:
            return Exchange([], "died", detail=f"{deaths[-1]} ({len(deaths)} workers in a row)")
        return Exchange([], "died", detail="was replaced before it could run this program, repeatedly")

    def _verdict(self, task: Task, ex: Exchange, check_test: bool) -> CandidateVerdict:
        return judge(task, ex, self.config, self._layers, check_test=check_test)

    def _candidate(self, task: Task, verdicts: list[PairVerdict], *, rechecked: bool) -> CandidateVerdict:
        n = len(task.train)
        return CandidateVerdict.model_construct(train=verdicts[:n], test=verdicts[n:], isolation=list(self._layers), rechecked=rechecked)


def cell_result(ex: Exchange, limit: float, layers: list[str]) -> CellResult:
    """A cell's outcome from its exchange; its grid parsed strictly, as a program's output is."""
    from arcsynth.grid import GridError, parse_grid

    iso = list(layers)
    if ex.outcome == "timeout":
        return CellResult("timeout", ex.text, error_type="Timeout", error=f"the cell did not finish within its limit ({limit:g} s CPU)", isolation=iso)
    if ex.outcome != "ok" or not ex.results:
        why = ex.detail or ("its result frames were invalid" if ex.outcome == "protocol" else "its worker died")
        return CellResult("crashed", ex.text, error_type="Crashed", error=f"the cell's process failed: {why}", isolation=iso)
    r = ex.results[0]
    if r.runtime > limit:
        return CellResult("timeout", ex.text, error_type="Timeout", error=f"took {r.runtime:.2f} s of CPU time (cell limit {limit:g} s CPU)",
                          cpu_s=r.runtime, isolation=iso)
    if r.kind == P.KIND_GRID:
        assert r.shape is not None and r.cells is not None
        h, w = r.shape
        rows = [list(r.cells[i * w:(i + 1) * w]) for i in range(h)]
        try:
            grid = parse_grid(rows).tolist()
        except GridError as e:
            return CellResult("error", ex.text, error_type="InvalidOutput", error=str(e), cpu_s=r.runtime, isolation=iso)
        return CellResult("ok", ex.text, grid=grid, cpu_s=r.runtime, isolation=iso)
    if r.kind == P.KIND_INVALID and r.error_type == NO_GRID:
        return CellResult("ok", ex.text, cpu_s=r.runtime, isolation=iso)
    status = {"Timeout": "timeout", "Crashed": "crashed", "ProtocolError": "crashed"}.get(r.error_type, "error")
    return CellResult(status, ex.text, error_type=r.error_type, error=r.message, cpu_s=r.runtime, isolation=iso)


def verify_program(source: str, task: Task, config: SandboxConfig | None = None, *, check_test: bool = True) -> CandidateVerdict:
    """Run one program on one task in a sandbox of its own (synchronous; starts and stops the sandbox)."""
    cfg = config or SandboxConfig()
    if cfg.workers == 0:  # one program: one worker, not one per core
        cfg = cfg.model_copy(update={"workers": 1})

    async def go() -> CandidateVerdict:
        async with Sandbox(cfg) as sb:
            return await sb.run(source, task, check_test=check_test)

    return asyncio.run(go())
