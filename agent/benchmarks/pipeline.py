"""Benchmark: does the agent keep up with a fast model server?

1. An OpenAI-compatible server double (:mod:`agent.benchmarks.server_double`, its own
   process on 127.0.0.1) answers at once, or after ``--latency-ms``, with
   realistic completions for real ARC-AGI-1 tasks: correct, wrong, crashing and
   code-less programs, prose around fenced code.
2. pipeline: the real ``openai`` backend, solve loop, sandbox and trace (a run
   directory written as ``arcsynth solve`` writes it, progress lines included)
   solve the tasks; its throughput is every program (extraction failures and
   duplicates included) over the wall time of the run.
3. sandbox alone: the programs the pipeline sent to the sandbox, read back from
   its trace, go straight into a fresh sandbox, all at once: what the sandbox
   can do on the same work.

The ratio of the two, ``pipeline/sandbox``, is printed last: 1.0 means the
agent adds nothing to the sandbox's own time; the target is at least 0.8.
Next to it: the main process's CPU (what the event loop spends per program),
its peak memory, the trace's bytes per program, the client's request latency
and the event loop's lag (how late a 10 ms timer fires); and the limit those CPU
times put on the ratio here: on shared cores the agent's own work and the double's
come on top of the sandbox's, and the agent's main process has one core. What the
ratio falls short of that limit is time the cores stood idle: the share of it in
each run is printed too (Linux; every process on the machine counts). With repeats, the
fastest run of each side gives the ratio, and the spread of all of them (each side's times,
each repeat's own ratio) shows how much of it the machine's noise decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

from agent.benchmarks.server_double import MODEL_NAME, SOLUTIONS


@dataclass
class PipelineFigures:
    """What one pipeline run measured."""

    programs: int
    verified: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    trace_bytes: int
    statuses: dict[str, int]
    latency_p50_s: float
    latency_p99_s: float
    lag_p99_ms: float
    lag_max_ms: float
    idle_share: Optional[float] = None
    jobs: list[tuple[str, Any]] = field(default_factory=list, repr=False)


class SandboxAlone(NamedTuple):
    """What the sandbox alone measured on the pipeline's programs."""

    seconds: float
    passing: int
    cpu_s: float  # this (the trusted) process's CPU
    idle_share: Optional[float]


def bench_tasks(count: int, dataset: str = "arc1:train") -> list[Any]:
    """``count`` real tasks: those the double knows a solution for, then others spread over the dataset."""
    from arcsynth.datasets import load_dataset

    tasks = sorted(load_dataset(dataset), key=lambda t: t.id)
    known = [t for t in tasks if t.id in SOLUTIONS]
    others = [t for t in tasks if t.id not in SOLUTIONS]
    step = max(1, len(others) // max(1, count - len(known)))
    chosen = (known + others[::step])[:count]
    return chosen


@dataclass
class DoubleProcess:
    """The server double's process: where it listens, and (after it exits) its CPU time."""

    base_url: str = ""
    cpu_s: Optional[float] = None
    requests: int = 0


@contextlib.contextmanager
def server_double(task_ids: list[str], latency_ms: float, seed: int, dataset: str):
    """The server double in its own process; yields a :class:`DoubleProcess`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.benchmarks.server_double", "--tasks", ",".join(task_ids), "--latency-ms", str(latency_ms),
         "--seed", str(seed), "--dataset", dataset],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the server double did not start (exit status {proc.poll()})")
        info = DoubleProcess(base_url=f"http://127.0.0.1:{int(line.split()[1])}/v1")
        yield info
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the double serves until its stdin closes
        try:
            last = proc.stdout.readline().split() if proc.stdout is not None else []
            if len(last) == 4 and last[0] == "cpu":
                info.cpu_s, info.requests = float(last[1]), int(last[3])
            proc.wait(10)
        except (subprocess.TimeoutExpired, ValueError, UnboundLocalError):
            proc.kill()
            proc.wait()


def bench_config(base_url: str, *, rounds: int, prompts: int, samples: int, concurrency: int, workers: int, seed: int) -> Any:
    from agent.backends import ModelConfig
    from agent.config import BudgetConfig, RunConfig, SamplingConfig, resolve_environment
    from sandbox import SandboxConfig

    # Resolved as `solve` resolves a new run's config, so prompts are built as in a real run.
    return resolve_environment(RunConfig(
        name="bench-pipeline",
        seed=seed,
        concurrency=concurrency,
        model=ModelConfig(backend="openai", model=MODEL_NAME, base_url=base_url, concurrency=max(concurrency, 8), max_retries=2),
        sampling=SamplingConfig(temperature=1.0, max_tokens=1024, samples_per_prompt=samples),
        budget=BudgetConfig(rounds=rounds, first_prompts=prompts, refine_prompts=prompts, stop_after_passing=None),
        sandbox=SandboxConfig(workers=workers),
    ))


class LoopLag:
    """How late a 10 ms timer fires on the event loop: what every other coroutine waits behind."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: Optional[asyncio.Task] = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append(loop.time() - t - 0.01)

    def __enter__(self) -> "LoopLag":
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def core_ticks() -> Optional[tuple[int, int]]:
    """(idle, all) clock ticks of every core since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    if len(ticks) < 5:
        return None
    return ticks[3] + ticks[4], sum(ticks)


def idle_share(before: Optional[tuple[int, int]], after: Optional[tuple[int, int]]) -> Optional[float]:
    """The share of the cores' time between two :func:`core_ticks` readings that no process used."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


@dataclass
class Window:
    """A timed stretch: its wall-clock seconds, this process's CPU seconds and the cores' idle share."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    idle_share: Optional[float] = None


@contextlib.contextmanager
def timed_window():
    """Measure the ``with`` block into the :class:`Window` it yields (filled when the block ends)."""
    w = Window()
    ticks0, cpu0, t0 = core_ticks(), _cpu_s(), time.perf_counter()
    try:
        yield w
    finally:
        w.wall_s, w.cpu_s, w.idle_share = time.perf_counter() - t0, _cpu_s() - cpu0, idle_share(ticks0, core_ticks())


async def run_pipeline(cfg: Any, tasks: list[Any], run_path: Path, profile: Optional[cProfile.Profile]) -> PipelineFigures:
    """Solve ``tasks`` as ``arcsynth solve`` does, into ``run_path``; measure the main process."""
    from agent.backends import make_backend
    from agent.backends.replay import TokenCountRecorder
    from agent.config import config_hash
    from agent.rundir import Recorder, RunDir
    from agent.runner import collector_for_a_run, run_tasks
    from agent.trace import RunStart, read_trace
    from arcsynth.cli.solve import ProgressDisplay, RunCounters
    from arcsynth.memo import clear_all
    from sandbox import Sandbox

    # Each repeat answers the same requests: what an earlier one remembered (extractions,
    # hashes, grid texts) would make the later ones cheaper than any real run.
    clear_all()
    rd = RunDir.create(run_path)
    with Recorder(rd) as recorder:
        async with Sandbox(cfg.sandbox) as sb:
            backend = make_backend(cfg.model)
            await backend.start()
            try:
                recorder.emit(RunStart(run_id=rd.run_id, config_hash=config_hash(cfg), resumed=False,
                                       task_ids=[t.id for t in tasks], pid=os.getpid(), host="bench"))
                counted = TokenCountRecorder(backend, recorder.emit)
                # The progress lines a run in a pipe prints are part of its cost; they go nowhere here.
                with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                        ProgressDisplay(RunCounters(total=len(tasks)), live=False) as progress, LoopLag() as lag, \
                        collector_for_a_run():
                    recorder.add_listener(progress)
                    with timed_window() as window:
                        if profile is not None:
                            profile.enable()
                        try:
                            summary = await run_tasks(tasks, cfg, counted, sb, recorder)
                        finally:
                            if profile is not None:
                                profile.disable()
            finally:
                await backend.close()
    by_task = {t.id: t for t in tasks}
    sources: dict[str, str] = {}
    jobs: list[tuple[str, Any]] = []
    latencies: dict[str, float] = {}
    statuses: dict[str, int] = {}
    for ev in read_trace(rd.trace_path):
        if ev.event == "program":
            key = ev.status if ev.duplicate_of is None else "duplicate"
            statuses[key] = statuses.get(key, 0) + 1
            if ev.source is not None:
                sources[ev.program_id] = ev.source
        elif ev.event == "verdict":
            jobs.append((sources[ev.program_id], by_task[ev.task_id]))
        elif ev.event == "completion":
            latencies[ev.request_id] = ev.latency_s
    lat = list(latencies.values())
    return PipelineFigures(
        programs=summary.n_programs, verified=len(jobs), wall_s=window.wall_s, cpu_s=window.cpu_s,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        trace_bytes=rd.trace_path.stat().st_size, statuses=statuses,
        latency_p50_s=_quantile(lat, 0.5), latency_p99_s=_quantile(lat, 0.99),
        lag_p99_ms=1000 * _quantile(lag.samples, 0.99), lag_max_ms=1000 * max(lag.samples, default=0.0),
        idle_share=window.idle_share, jobs=jobs,
    )


async def run_sandbox_alone(cfg: Any, jobs: list[tuple[str, Any]]) -> SandboxAlone:
    """The same programs straight into a fresh sandbox, all at once."""
    from sandbox import Sandbox

    async with Sandbox(cfg.sandbox) as sb:
        with timed_window() as window:
            verdicts = await asyncio.gather(*(sb.run(source, task, check_test=False) for source, task in jobs))
    return SandboxAlone(window.wall_s, sum(v.all_train_pass for v in verdicts), window.cpu_s, window.idle_share)


def limit_line(programs: int, cores: int, sandbox_s: float, sandbox_cpu_s: float, pipeline_cpu_s: float,
               double_cpu_s: float, workers: Optional[int] = None) -> str:
    """What bounds pipeline/sandbox on this machine, from CPU times measured in the run.

    The sandbox alone keeps busy as many cores as it has workers (``workers``, default
    every core); the pipeline does the same sandbox work plus the agent's own (its main
    process's CPU beyond what the sandbox's trusted side spends there, which the sandbox
    alone also spends) and the server double's, on the machine's ``cores``. And the agent
    is one process: it cannot go faster than one core allows.
    """
    busy = min(workers or cores, cores)
    per = 1000 / programs  # seconds in all -> milliseconds per program of the mix
    sandbox_ms = busy * sandbox_s * per
    agent_ms = max(0.0, pipeline_cpu_s - sandbox_cpu_s) * per
    double_ms = double_cpu_s * per
    # All that work over every core, against the sandbox alone's wall time.
    shared = sandbox_s * per * cores / (sandbox_ms + agent_ms + double_ms)
    one_core = sandbox_s / pipeline_cpu_s if pipeline_cpu_s > 0 else float("inf")
    if min(shared, one_core) >= 1:
        which = (f"neither the shared cores ({shared:.2f}) nor the main process's one core ({one_core:.2f}) keeps it "
                 f"below the sandbox's own pace, 1.00")
    elif shared <= one_core:
        which = f"the shared cores cap it at {shared:.2f} (one core caps the main process at {one_core:.2f})"
    else:
        which = f"the main process, at one core, caps it at {one_core:.2f} (the shared cores at {shared:.2f})"
    return (f"limit:         the sandbox alone takes {sandbox_ms:.2f} core-ms per program of the mix on {busy} of {cores} cores; "
            f"the agent's own work adds {agent_ms:.2f} ms and the server double {double_ms:.2f} ms: {which}")


def spread_line(pipeline_s: list[float], sandbox_s: list[float]) -> str:
    """How far the repeats scattered: each side's range of times, and the ratio each repeat gave on its own.

    Repeat ``k``'s ratio pairs its pipeline run with the sandbox-alone run right after
    it; the spread of those says how much of the printed ratio is the machine's noise.
    """
    paired = [s / p for p, s in zip(pipeline_s, sandbox_s) if p > 0]
    return (f"spread:        over {len(pipeline_s)} repeats the pipeline took {min(pipeline_s):.2f}-{max(pipeline_s):.2f} s "
            f"and the sandbox alone {min(sandbox_s):.2f}-{max(sandbox_s):.2f} s; each repeat's own ratio "
            f"{min(paired):.2f}-{max(paired):.2f}")


def main(
    tasks: int = 40,
    rounds: int = 2,
    prompts: int = 4,
    samples: int = 8,
    concurrency: int = 16,
    latency_ms: float = 0.0,
    workers: int = 0,
    seed: int = 0,
    repeat: int = 3,
    profile: Optional[Path] = None,
    keep: Optional[Path] = None,
    dataset: str = "arc1:train",
) -> float:
    """Run the benchmark and print its figures; returns pipeline/sandbox (printed last)."""
    chosen = bench_tasks(tasks, dataset)
    per_task = rounds * prompts * samples
    n_workers = workers or os.cpu_count() or 1
    print(
        f"pipeline benchmark: {len(chosen)} ARC-AGI-1 tasks x {per_task} programs ({rounds} rounds x {prompts} prompts x "
        f"n={samples}), {concurrency} tasks in flight, server double latency {latency_ms:g} ms, {n_workers} sandbox workers, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    prof = cProfile.Profile() if profile is not None else None
    pipes: list[PipelineFigures] = []
    alones: list[SandboxAlone] = []
    tmp = Path(tempfile.mkdtemp(prefix="arcsynth-bench-pipeline-"))
    try:
        with server_double([t.id for t in chosen], latency_ms, seed, dataset) as double:
            cfg = bench_config(double.base_url, rounds=rounds, prompts=prompts, samples=samples, concurrency=concurrency,
                               workers=workers, seed=seed)
            # Pipeline and sandbox alternate; the faster run of each counts, so that a
            # burst of other work on the machine does not decide the ratio.
            for k in range(repeat):
                run_path = (keep if keep is not None and k == 0 else tmp / f"run{k}")
                figures = asyncio.run(run_pipeline(cfg, chosen, run_path, prof))
                alones.append(asyncio.run(run_sandbox_alone(cfg, figures.jobs)))
                figures.jobs = []  # the programs' sources, needed no more: not held through later repeats
                pipes.append(figures)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f = min(pipes, key=lambda p: p.wall_s)
    best_sbx = min(alones, key=lambda a: a.seconds)
    sbx_s = best_sbx.seconds
    pipe_rate = f.programs / f.wall_s
    sbx_rate = f.programs / sbx_s  # the mix's programs per second if only the sandbox's work counted
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(f.statuses.items(), key=lambda kv: -kv[1]))
    print(f"pipeline:      {f.programs} programs in {f.wall_s:.1f} s = {pipe_rate:.1f} programs/s end to end "
          f"({f.verified} run in the sandbox; {statuses})")
    print(f"sandbox alone: the same {f.verified} programs in {sbx_s:.1f} s = {f.verified / sbx_s:.1f} programs/s, "
          f"i.e. {sbx_rate:.1f} programs/s of the mix ({best_sbx.passing} pass every train pair)")
    print(f"main process:  CPU {100 * f.cpu_s / f.wall_s:.0f}% of one core, {1000 * f.cpu_s / f.programs:.2f} ms per program; "
          f"peak memory {f.peak_rss_mb:.0f} MB")
    print(f"client:        request latency p50 {1000 * f.latency_p50_s:.0f} ms, p99 {1000 * f.latency_p99_s:.0f} ms; "
          f"event loop lag p99 {f.lag_p99_ms:.0f} ms, max {f.lag_max_ms:.0f} ms")
    print(f"trace:         {f.trace_bytes / f.programs:.0f} bytes per program ({f.trace_bytes / 1e6:.1f} MB)")
    if double.cpu_s is not None and double.requests:
        print(f"server double: {double.cpu_s:.1f} s CPU for {double.requests} requests "
              f"({1000 * double.cpu_s / double.requests:.1f} ms each), on the same cores as the pipeline run")
    # The double served every repeat: its CPU for one run is its share.
    print(limit_line(f.programs, os.cpu_count() or 1, sbx_s, best_sbx.cpu_s, f.cpu_s, (double.cpu_s or 0.0) / repeat,
                     workers=n_workers))
    if f.idle_share is not None and best_sbx.idle_share is not None:
        # The limit assumes busy cores; time they stood idle is what the ratio loses beyond it.
        print(f"idle:          the cores stood idle {100 * f.idle_share:.1f}% of the pipeline run and "
              f"{100 * best_sbx.idle_share:.1f}% of the sandbox alone (every process on the machine counts)")
    if repeat > 1:
        print(spread_line([p.wall_s for p in pipes], [a.seconds for a in alones]))
    if prof is not None and profile is not None:
        prof.dump_stats(str(profile))
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
        print(f"profile of the main process written to {profile}; top functions by own time:")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
    ratio = sbx_s / f.wall_s
    print(f"pipeline/sandbox {ratio:.2f}")
    return ratio
