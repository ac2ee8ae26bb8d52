"""The sandbox as the rest of arcsynth sees it: run a program on a task, get verdicts.

This module schedules programs on the workers (pipelined, with replacement and
fresh-process re-checks of passes); ``sandbox.judge`` turns what comes back
into verdicts, in this process, against expected outputs no worker ever sees.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import re
import time
from collections import OrderedDict
from typing import Iterable

from arcsynth.task import Task
from sandbox import layers as L
from sandbox.config import SandboxConfig, SandboxUnavailable
from sandbox.judge import judge
from sandbox.pool import Exchange, Host, SandboxError, Worker, WorkerDied, collect, send
from sandbox.verdict import CandidateVerdict, PairVerdict

# A worker is replaced after this many candidates: it bounds the CPU-time rlimit
# (each candidate uses at most candidate_timeout_s) and any slow leak. One fork
# (~5-10 ms) per 500 candidates of ~0.5 ms each costs ~3%.
MAX_CANDIDATES_PER_WORKER = 500
MAX_SOURCE_BYTES = 1 << 20
# Requests in flight per worker: the next candidate is already in the pipe when
# the current one finishes, so a worker never waits for the event loop.
PIPELINE_DEPTH = 2
# One-shot processes kept forked and hardened for re-checks of passing programs.
SPARE_FRESH_WORKERS = 1
_MAX_REQUEUES = 5
# Fresh-process verdicts of passing programs kept to answer repeats (see _recheck);
# at most ~40 MB even if every one held ten 30x30 outputs.
VERIFIED_CACHE = 512
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
    r"\._|\bimport[ \t]+_|\bimport[^\n#]*,[ \t]*_|"
    # raw memory views, which can overwrite the worker's own state
    r"\b(as_strided|ctypeslib|frombuffer)\b"
)
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\S+)[ \t]+import|import[ \t]+([^#;\n]+))", re.M)
_OFFERED = frozenset(
    "math cmath itertools collections functools copy heapq bisect re typing dataclasses operator statistics random "
    "string fractions decimal enum abc numbers array queue json time numpy scipy".split()
)


@functools.lru_cache(maxsize=4096)  # models repeat themselves; the scan costs ~50 us
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
        self._spawn_locks: list[asyncio.Lock] = []
        self._restart_lock = asyncio.Lock()
        self._spares: list[Worker] = []
        self._refill: asyncio.Task | None = None
        self._abandoned: list[Worker] = []
        self._verified: OrderedDict[tuple, CandidateVerdict] = OrderedDict()
        self._t_start = 0.0
        self._stats = {"candidates": 0, "pairs": 0, "rechecks": 0, "timeouts": 0, "crashes": 0, "respawns": 0, "host_restarts": 0, "busy_s": 0.0}

    # ---- lifecycle ----

    @property
    def layers(self) -> list[str]:
        """The active isolation layers (empty before start)."""
        return list(self._layers)

    async def start(self) -> None:
        """Start the host and the workers; raises SandboxUnavailable without the minimum isolation."""
        if self._host is not None:
            return
        host, layers = await self._launch()
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
            for w in self._workers + self._spares + self._abandoned:
                if w is not None:
                    w.mark_dead()
                    w.close_fds()
            self._workers = [None] * self.n_workers
            self._spares, self._abandoned = [], []
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
        if self._refill is not None:
            self._refill.cancel()
            try:
                await self._refill
            except BaseException:
                pass
            self._refill = None
        for w in self._workers + self._abandoned + self._spares:
            if w is not None:
                w.close_fds()
        self._workers = []
        self._abandoned = []
        self._spares = []
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
            return self._candidate(task, [err] * len(pairs), rechecked=False)
        slot = await self._slots.get()
        try:
            ex = await self._exchange(slot, source, inputs, once=False)
            verdict = self._verdict(task, ex, check_test)
            if verdict.all_train_pass and self.config.recheck_passes:
                verdict = await self._recheck(slot, source, task, inputs, check_test)
        finally:
            self._slots.put_nowait(slot)
        self._stats["candidates"] += 1
        self._stats["pairs"] += len(pairs)
        return verdict

    async def _recheck(self, slot: int, source: str, task: Task, inputs: list, check_test: bool) -> CandidateVerdict:
        """The verdict of a fresh process for a program that passed in a pooled worker.

        The same program on the same task is re-run only until a fresh process
        has passed it once; later passes get that fresh verdict (its outputs
        included, so a tampered worker cannot change the test outputs either).
        Models repeat their programs often, and a fork costs ~5-10 ms.
        """
        h = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16)
        for p in task.train:
            h.update(p.output.tobytes() + bytes(p.output.shape))
        for _, _, cells in inputs:
            h.update(cells)
        key = (h.digest(), task.id, len(inputs), check_test)
        cached = self._verified.get(key)
        if cached is not None:
            self._verified.move_to_end(key)
            return cached.model_copy(deep=True)
        self._stats["rechecks"] += 1
        ex = await self._exchange(slot, source, inputs, once=True)
        fresh = self._verdict(task, ex, check_test)
        fresh.rechecked = fresh.all_train_pass
        if fresh.rechecked:
            self._verified[key] = fresh.model_copy(deep=True)
            if len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        return fresh

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

    async def _fresh_worker(self) -> Worker:
        """A worker that has never run a program, forked ahead of time when possible."""
        w = self._spares.pop() if self._spares else await self._spawn(self.n_workers, True)
        if self._refill is None or self._refill.done():
            self._refill = asyncio.get_running_loop().create_task(self._refill_spares())
        return w

    async def _refill_spares(self) -> None:
        # Forking off the critical path: the next re-check finds its process ready.
        try:
            while self._host is not None and len(self._spares) < SPARE_FRESH_WORKERS:
                self._spares.append(await self._spawn(self.n_workers, True))
        except SandboxError:
            pass

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

    async def _exchange(self, slot: int, source: str, inputs: list, *, once: bool) -> Exchange:
        await self._reap_abandoned()
        cfg = self.config
        send_timeout = 2 * cfg.candidate_timeout_s + 1.0
        if once:
            # A fresh fork of the host, which never ran a program: nothing an
            # earlier candidate did can reach it. Its own uid, next to the slot's.
            w = await self._fresh_worker()
            try:
                nonce, npairs = await send(w, source, inputs, cfg.pair_timeout_s, send_timeout)
                ex = await collect(w, nonce, npairs, cfg.pair_timeout_s, cfg.candidate_timeout_s)
            except WorkerDied:
                ex = Exchange([], "died")
            except BaseException:
                self._abandon(None, w)
                raise
            self._stats["busy_s"] += ex.elapsed
            await self._retire(None, w, ex)
            return ex

        risky = _retires_worker(source)
        for _attempt in range(_MAX_REQUEUES):
            w = await self._pooled_worker(slot)
            seq = w.take_seq()
            try:
                if w.tail_risky:
                    # Never queue a request behind a program that may read it.
                    await w.wait_turn(seq)
                    if w.dead:
                        continue
                w.tail_risky = risky
                try:
                    nonce, npairs = await send(w, source, inputs, cfg.pair_timeout_s, send_timeout)
                except WorkerDied:
                    if not w.dead:  # it died idle, or stopped reading
                        await self._retire(slot, w, Exchange([], "died"))
                    continue
                await w.wait_turn(seq)
                if w.dead:  # retired by the candidate before ours; our request went with it
                    continue
                ex = await collect(w, nonce, npairs, cfg.pair_timeout_s, cfg.candidate_timeout_s)
            except BaseException:
                # Cancelled: our request may still run and its results would
                # be read as someone else's, so this worker cannot be trusted.
                self._abandon(slot, w)
                raise
            self._stats["busy_s"] += ex.elapsed
            if ex.outcome != "ok" or ex.taint or risky or w.used >= MAX_CANDIDATES_PER_WORKER:
                await self._retire(slot, w, ex)
                if ex.outcome == "died" and self._host_lost():
                    continue  # not the program's doing: run it again on the next host
            w.end_turn(seq)
            return ex
        return Exchange([], "died", detail="was replaced before it could run this program, repeatedly")

    def _verdict(self, task: Task, ex: Exchange, check_test: bool) -> CandidateVerdict:
        return judge(task, ex, self.config, self._layers, check_test=check_test)

    def _candidate(self, task: Task, verdicts: list[PairVerdict], *, rechecked: bool) -> CandidateVerdict:
        n = len(task.train)
        return CandidateVerdict.model_construct(train=verdicts[:n], test=verdicts[n:], isolation=list(self._layers), rechecked=rechecked)


def verify_program(source: str, task: Task, config: SandboxConfig | None = None, *, check_test: bool = True) -> CandidateVerdict:
    """Run one program on one task in a sandbox of its own (synchronous; starts and stops the sandbox)."""
    cfg = config or SandboxConfig()
    if cfg.workers == 0:  # one program: one worker, not one per core
        cfg = cfg.model_copy(update={"workers": 1})

    async def go() -> CandidateVerdict:
        async with Sandbox(cfg) as sb:
            return await sb.run(source, task, check_test=check_test)

    return asyncio.run(go())
