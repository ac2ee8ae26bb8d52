"""Solve ARC tasks with a run config; resume a killed run where it stopped.

The run directory is printed at the start and at the end. Overrides ``key.path=value``
change the config, e.g. ``sampling.temperature=0.8 data.limit=5``.
With ``--resume RUN_DIR`` the run's own config.toml is used: a CONFIG or overrides
given as well must resolve to the same config hash (so a resumed run can never mix
two configs); tasks that already have a result are not redone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from arcsynth.cli.common import EXIT_BAD_INPUT, fail, stdout_console

EXIT_RECORD_FAILED = 3
"""The run record could not be written (disk full, read-only): the run stopped."""
EXIT_INTERRUPTED = 130
EXIT_ALL_TASKS_FAILED = 1
"""Every task of the run ended in an error (a dead server, a failing backend): nothing was solved."""


class SolveFailure(Exception):
    """A run cannot start or go on; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT, *, before_start: bool = False):
        super().__init__(message)
        self.code = code
        self.before_start = before_start
        """Nothing ran (the sandbox or the backend could not start): there is nothing to resume."""


# ---------------------------------------------------------------------------------------
# Progress


@dataclass
class RunCounters:
    """Live totals fed by trace events (drives the progress display)."""

    total: int
    done: int = 0
    solved_train: int = 0
    programs: int = 0
    completion_tokens: int = 0
    verdicts: int = 0
    started: float = field(default_factory=time.monotonic)

    def on_event(self, ev: Any) -> bool:
        """Update from one event; True when a task just finished."""
        kind = getattr(ev, "event", None)
        if kind == "program":
            self.programs += 1
        elif kind == "completion":
            self.completion_tokens += ev.completion_tokens
        elif kind == "verdict":
            self.verdicts += 1
        elif kind == "task_result":
            self.done += 1
            self.solved_train += bool(ev.solved_train)
            return True
        return False

    def rates(self) -> tuple[float, float]:
        dt = max(time.monotonic() - self.started, 1e-9)
        return self.programs / dt, self.completion_tokens / dt


@dataclass
class TaskProgress:
    """What a task in flight has done so far (from its trace events)."""

    round: int = 0
    programs: int = 0
    verified: int = 0
    passing: int = 0
    best: float | None = None
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def best_text(self) -> str:
        return "-" if self.best is None else f"{self.best:.0%}"

    def line(self, task_id: str) -> str:
        tps = self.tokens / max(time.monotonic() - self.started, 1e-9)
        return (f"{task_id} round {self.round}: {self.programs} programs, {self.verified} verified, "
                f"{self.passing} passing, best train accuracy {self.best_text}, {tps:.1f} tok/s")


class ProgressDisplay:
    """Progress inside each task as well as over the run.

    On a terminal: a bar over the tasks and one live line per task in flight (round,
    programs, verified, best train accuracy, tokens/s); finished tasks leave a line. In a
    pipe: a plain line when a task starts a new round and when it finishes, so a slow
    model is never silent for a whole task.
    """

    def __init__(self, counters: RunCounters, *, live: bool):
        self.c = counters
        self.live = live
        self._progress: Any = None
        self._bar: Any = None
        self._tasks: dict[str, TaskProgress] = {}
        self._rows: dict[str, Any] = {}
        # request_id -> [completions asked for, completions back, their tokens]: a pipe
        # gets a line when a request's completions are all back.
        self._requests: dict[str, list[int]] = {}

    def __enter__(self) -> "ProgressDisplay":
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(emoji=False, highlight=False),
            )
            self._progress.__enter__()
            self._bar = self._progress.add_task("tasks", total=self.c.total, completed=self.c.done, stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _task(self, task_id: str) -> TaskProgress:
        if task_id not in self._tasks:
            self._tasks[task_id] = TaskProgress()
            if self._progress is not None:
                self._rows[task_id] = self._progress.add_task(task_id, total=None, stats="starting")
        return self._tasks[task_id]

    def __call__(self, ev: Any) -> None:
        finished = self.c.on_event(ev)
        kind = getattr(ev, "event", None)
        tid = getattr(ev, "task_id", None)
        t = self._task(tid) if tid is not None and kind in ("task_start", "prompt", "completion", "program", "verdict") else None
        new_round = False
        if t is not None:
            if kind == "prompt" and ev.round != t.round:
                new_round, t.round = True, ev.round
            elif kind == "completion":
                t.tokens += ev.completion_tokens
            elif kind == "program":
                t.programs += 1
            elif kind == "verdict":
                t.verified += 1
                t.passing += bool(ev.all_train_pass)
                t.best = ev.train_accuracy if t.best is None else max(t.best, ev.train_accuracy)
        if self._progress is not None:
            stats = self._stats()
            if t is not None and tid in self._rows:
                self._progress.update(self._rows[tid], stats=t.line(tid).split(": ", 1)[1])
            if finished:
                done = self._tasks.pop(ev.task_id, None)
                row = self._rows.pop(ev.task_id, None)
                if row is not None:
                    self._progress.remove_task(row)
                self._progress.console.print(self._finished_line(ev, done, stats), highlight=False, markup=False)
            self._progress.update(self._bar, completed=self.c.done, stats=stats)
            return
        if new_round and t is not None and tid is not None:
            # The round just started: what the earlier rounds did.
            print(f"  {t.line(tid)}", flush=True)
        if kind == "prompt":
            self._requests[ev.request_id] = [int((ev.sampling or {}).get("n") or 1), 0, 0]
        elif kind == "completion" and ev.request_id in self._requests:
            req = self._requests[ev.request_id]
            req[1] += 1
            req[2] += ev.completion_tokens
            if req[1] >= req[0]:
                # A slow model is never silent for a whole round: one line per request.
                del self._requests[ev.request_id]
                rate = req[2] / ev.latency_s if ev.latency_s > 0 else 0.0
                print(f"  {tid} round {t.round if t else '?'}: {req[1]} completions back after {ev.latency_s:.1f}s "
                      f"({req[2]} tokens, {rate:.1f} tok/s)", flush=True)
        if finished:
            print(self._finished_line(ev, self._tasks.pop(ev.task_id, None), self._stats()), flush=True)

    def _stats(self) -> str:
        # Built only where it is shown: this listener sees every event of the run.
        pps, tps = self.c.rates()
        return f"solved(train) {self.c.solved_train}  {pps:.2f} programs/s  {tps:.1f} tok/s"

    def _finished_line(self, ev: Any, done: TaskProgress | None, stats: str) -> str:
        score = "" if ev.score is None else f" score {ev.score:g}"
        # What the sandbox made of the task's programs: a one-round run prints no round line.
        judged = "" if done is None else f" ({done.verified} verified, best train accuracy {done.best_text})"
        return (
            f"[{self.c.done}/{self.c.total}] {ev.task_id}: {'solved(train)' if ev.solved_train else 'unsolved'}{score}, "
            f"{ev.n_programs} programs{judged}, {ev.completion_tokens} tokens, {ev.wall_s:.1f}s ({ev.stop_reason}); {stats}"
        )


# ---------------------------------------------------------------------------------------
# The run


@dataclass
class RunOutcome:
    run_dir: Path
    summary: dict[str, Any]


def select_run_tasks(cfg: Any, *, whole: bool = False) -> tuple[Any, list[Any]]:
    """Load the dataset and pick the tasks of ``cfg.data``; user errors become SolveFailure.

    With ``data.shard`` set, only that shard's tasks, unless ``whole``: then the whole
    selection the shard is a part of.
    """
    from agent.config import parse_shard
    from arcsynth.datasets import DatasetError, UnknownTaskError, load_dataset, select_tasks, shard_tasks
    from arcsynth.task import TaskFormatError

    d = cfg.data
    try:
        ds = load_dataset(d.dataset, lenient=d.lenient)
        tasks = select_tasks(ds, ids=d.tasks, ids_file=d.tasks_file, limit=d.limit, sample=d.sample, seed=cfg.seed)
    except (DatasetError, UnknownTaskError, TaskFormatError) as e:
        raise SolveFailure(f"data: {e}") from None
    if not tasks:
        raise SolveFailure(f"data: no tasks selected from {d.dataset}")
    if d.shard is not None and not whole:
        k, n = parse_shard(d.shard)
        picked = shard_tasks(tasks, k, n)
        if not picked:
            raise SolveFailure(f"data.shard {d.shard}: shard {k} is empty, the selection has only {len(tasks)} task(s); "
                               f"use at most {len(tasks)} shards")
        tasks = picked
    return ds, tasks


def run_data_provenance(cfg: Any, dataset: Any, tasks: list[Any]) -> dict[str, Any]:
    """provenance.json's ``data``: for a shard, also the whole selection it is a part of."""
    from arcsynth.datasets import data_provenance

    if cfg.data.shard is None:
        return data_provenance(dataset, tasks)
    _, whole = select_run_tasks(cfg, whole=True)
    return data_provenance(dataset, tasks, shard=cfg.data.shard, selected=whole)


RAN_IN_SANDBOX = ("pass", "wrong", "timeout", "error")
"""Program statuses of programs the sandbox ran (see agent.trace.PROGRAM_STATUSES)."""


def _summary_table(summary: dict[str, Any], run_dir: Path) -> Any:
    from rich.table import Table

    t = Table(title=escape(f"run {run_dir}"), show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")

    def row(k: str, v: Any) -> None:
        t.add_row(k, str(v))

    row("tasks done", f"{summary['tasks_done']} / {summary['tasks_selected']}")
    row("solved (a program passes every train pair)", summary["tasks_solved_train"])
    if summary.get("pass2") is not None:
        p = summary["pass2"]
        row("pass@2 score", f"{p['total']:g} / {p['n_tasks']} tasks ({100 * p['score']:.1f}%)")
    all_counts = summary.get("program_status_counts") or {}
    counts = {k: v for k, v in all_counts.items() if v}
    row("programs", f"{summary.get('n_programs', 0)}" + (f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else ""))
    n_programs = summary.get("n_programs") or 0
    if n_programs:
        # How much of the model's output was a program the sandbox judged: run there, or
        # the same source as one that was; the rest failed extraction (no_code,
        # syntax_error, no_transform) or was not verified before its task stopped.
        ran = sum(int(all_counts.get(k, 0)) for k in RAN_IN_SANDBOX)
        dup = int(all_counts.get("duplicate", 0))
        row("programs judged by the sandbox", f"{ran + dup} of {n_programs} ({100 * (ran + dup) / n_programs:.0f}%)"
            + (f", {dup} of them repeats of an earlier program" if dup else ""))
    row("prompt / completion tokens", f"{summary.get('prompt_tokens', 0)} / {summary.get('completion_tokens', 0)}")
    row("wall time (this session)", f"{summary['session_wall_s']:.1f}s")
    if summary.get("session_completion_tokens_per_s") is not None:
        row("completion tokens/s (this session)", f"{summary['session_completion_tokens_per_s']:.1f}")
    sb = summary.get("sandbox_stats")
    if isinstance(sb, dict) and sb:
        # Throughput per busy worker second: wall-clock candidates/s would mostly
        # measure how long the sandbox waited for the model. summary.json holds every counter.
        n, busy = sb.get("candidates", 0), sb.get("busy_s", 0.0)
        rate = f", {n / busy:.0f} candidates/s of worker time" if busy > 0 else ""
        # The sandbox counts this session's work only; the rows above count the whole run.
        row("sandbox (this session)", f"{n} candidates{rate}, {sb.get('timeouts', 0)} timeouts, {sb.get('crashes', 0)} crashes, "
            f"{sb.get('workers', '?')} workers")
    if summary.get("stop_reasons"):
        row("stop reasons", ", ".join(f"{k}: {v}" for k, v in summary["stop_reasons"].items()))
    return t


def _as_dict(obj: Any) -> Any:
    if obj is None:
        return None
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    return obj if isinstance(obj, dict) else str(obj)


def _runner_totals(run_summary: Any) -> Any:
    d = _as_dict(run_summary)
    if isinstance(d, dict):
        # Per-task outcomes and attempts are in results/ and submission.json already.
        d = {k: v for k, v in d.items() if k not in ("outcomes", "submission")}
    return d


def build_summary(rd: Any, tasks: list[Any], dataset_name: str) -> dict[str, Any]:
    """summary.json: totals over results/ of the selected tasks, and the pass@2 score."""
    from agent.rundir import summarize_results
    from arcsynth.datasets import Dataset
    from arcsynth.scoring import Attempts, score_submission

    results = rd.read_results()
    ids = [t.id for t in tasks]
    selected = {tid: results[tid] for tid in ids if tid in results}
    summary: dict[str, Any] = {"tasks_selected": len(ids), **summarize_results(selected)}
    done = [t for t in tasks if t.id in selected]
    if done and all(t.test_outputs_known for t in done):
        sub = {t.id: [Attempts(**a) for a in selected[t.id]["attempts"]] for t in done if selected[t.id].get("attempts")}
        report = score_submission(sub, Dataset(name=dataset_name, tasks={t.id: t for t in done}))
        summary["pass2"] = {
            "total": report.total, "score": report.score, "n_tasks": report.n_tasks,
            "n_tasks_solved": report.n_tasks_solved, "per_task": {s.task_id: s.score for s in report.tasks},
        }
    else:
        summary["pass2"] = None
    return summary


async def _cancel_stragglers() -> None:
    """End every other task of this event loop while backend and sandbox are still up.

    When a run stops on an error, coroutines it started (verifications of sibling
    programs) may still be pending; left to asyncio.run's shutdown they would be
    cancelled after the sandbox has closed, and fail there instead of here.
    """
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for t in others:
        t.cancel()
    if others:
        await asyncio.gather(*others, return_exceptions=True)


async def execute_run(
    cfg: Any, rd: Any, tasks: list[Any], *, argv: list[str], resumed: bool, dataset_name: str, live: bool,
    backend: Any = None, data: dict[str, Any] | None = None, ray_address: str | None = None,
) -> dict[str, Any]:
    """Start backend and sandbox, solve the tasks not done yet, write summary and submission.

    ``backend`` replaces the one ``cfg.model`` names (tests, embedding in other tools).
    With ``ray_address`` the tasks are solved on the nodes of that Ray cluster, each
    with its own sandbox and backend, and recorded here (agent.ray_runner).
    """
    from agent.backends import BackendError, make_backend
    from agent.backends.replay import TokenCountRecorder
    from agent.config import config_hash
    from agent.provenance import collect_provenance
    from agent.rundir import Recorder
    from agent.trace import RunEnd, RunStart
    from sandbox import Sandbox, SandboxUnavailable

    from agent.rundir import RecordError

    def quiet_record_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # After a failed write every pending coroutine of the run fails the same way;
        # the error is reported once, by the caller, not as a traceback per coroutine.
        if not isinstance(context.get("exception"), RecordError):
            loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(quiet_record_errors)
    started_at = datetime.now(timezone.utc)
    t0 = time.monotonic()
    chash = config_hash(cfg)
    done_ids = rd.done_task_ids() & {t.id for t in tasks}
    counters = RunCounters(total=len(tasks), done=len(done_ids))
    run_summary: Any = None
    with Recorder(rd) as recorder:
        if ray_address is not None:
            run_summary, sandbox_stats = await _execute_on_ray(
                cfg, rd, tasks, recorder, counters, ray_address=ray_address, done=done_ids, argv=argv, resumed=resumed,
                started_at=started_at, data=data, live=live,
            )
        else:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    sb = await stack.enter_async_context(Sandbox(cfg.sandbox))
                except SandboxUnavailable as e:
                    raise SolveFailure(f"sandbox: {e}", before_start=True) from None
                try:
                    if backend is None:
                        backend = make_backend(cfg.model)
                    await backend.start()
                except BackendError as e:
                    raise SolveFailure(f"model backend '{cfg.model.backend}' cannot serve: {e}", before_start=True) from None
                stack.push_async_callback(backend.close)
                backend = TokenCountRecorder(backend, recorder.emit)
                rd.write_provenance(collect_provenance(
                    config_hash=chash, seed=cfg.seed, argv=argv, backend=backend,
                    sandbox_layers=list(getattr(sb, "layers", []) or []), started_at=started_at, resumed=resumed,
                    data=data,
                ))
                recorder.emit(RunStart(run_id=rd.run_id, config_hash=chash, resumed=resumed, task_ids=[t.id for t in tasks],
                                       pid=os.getpid(), host=socket.gethostname()))
                from agent.runner import collector_for_a_run, run_tasks

                with ProgressDisplay(counters, live=live) as progress, collector_for_a_run():
                    recorder.add_listener(progress)
                    try:
                        run_summary = await run_tasks(tasks, cfg, backend, sb, recorder, done=done_ids)
                    finally:
                        await _cancel_stragglers()
                    if recorder.error is not None:  # a caller swallowed it; the run is not recorded
                        raise recorder.error
                sandbox_stats = _as_dict(getattr(sb, "stats", None))
        wall = time.monotonic() - t0
        summary = build_summary(rd, tasks, dataset_name)
        summary.update({
            "config_hash": chash,
            "session_wall_s": wall,
            "session_programs": counters.programs,
            "session_completion_tokens": counters.completion_tokens,
            "session_completion_tokens_per_s": counters.completion_tokens / wall if wall > 0 else None,
            "sandbox_stats": sandbox_stats if isinstance(sandbox_stats, dict) else None,
            "runner": _runner_totals(run_summary),
        })
        rd.write_summary(summary)
        rd.write_submission([t.id for t in tasks])
        recorder.emit(RunEnd(summary=summary))
    return summary


async def _execute_on_ray(
    cfg: Any, rd: Any, tasks: list[Any], recorder: Any, counters: RunCounters, *, ray_address: str, done: set[str],
    argv: list[str], resumed: bool, started_at: datetime, data: dict[str, Any] | None, live: bool,
) -> tuple[Any, dict[str, Any]]:
    """The solving part of :func:`execute_run` on a Ray cluster: (run totals, the nodes' summed sandbox counters)."""
    from agent.config import config_hash
    from agent.provenance import collect_provenance
    from agent.ray_runner import RayRunError, RayUnavailable, run_tasks_on_ray
    from agent.trace import RunStart

    chash = config_hash(cfg)
    progress = ProgressDisplay(counters, live=live)
    started = False

    def on_start(nodes: list[Any]) -> None:
        nonlocal started
        first = nodes[0].started
        prov = collect_provenance(
            config_hash=chash, seed=cfg.seed, argv=argv, backend=None, sandbox_layers=first.get("sandbox_layers"),
            started_at=started_at, resumed=resumed, data=data,
        )
        prov["model"] = first.get("model")
        prov["ray"] = {"address": ray_address, "nodes": [
            {"host": n.host, "node_id": n.node_id, "sandbox_layers": n.started.get("sandbox_layers"),
             "model": n.started.get("model")} for n in nodes]}
        rd.write_provenance(prov)
        recorder.emit(RunStart(run_id=rd.run_id, config_hash=chash, resumed=resumed, task_ids=[t.id for t in tasks],
                               pid=os.getpid(), host=socket.gethostname()))
        started = True
        progress.__enter__()
        recorder.add_listener(progress)

    try:
        run_summary, nodes, sandbox_stats = await run_tasks_on_ray(
            tasks, cfg, recorder, address=ray_address, done=done, on_start=on_start)
    except RayUnavailable as e:
        raise SolveFailure(str(e), before_start=not started) from None
    except RayRunError as e:
        raise SolveFailure(f"ray: {e}") from None
    finally:
        if started:
            progress.__exit__(None, None, None)
    if recorder.error is not None:
        raise recorder.error
    # Keyed by Ray node id as well: several nodes may share a host name (containers, one test machine).
    sandbox_stats["tasks_per_node"] = {f"{n.host}/{n.node_id[:12]}": n.tasks for n in nodes}
    return run_summary, sandbox_stats


def run_solve(
    config: Optional[Path], overrides: list[str], *, out: Optional[Path], resume: Optional[Path],
    argv: list[str], live: bool, console: Any, shard: Optional[str] = None, ray_address: Optional[str] = None,
) -> RunOutcome:
    """The whole of ``arcsynth solve``; raises SolveFailure for every user-facing error.

    ``shard`` ("K/N") sets ``data.shard`` of a new run; for a resumed run it must be
    the run's own shard.
    """
    from agent.config import ConfigError, config_hash, config_to_toml, load_config, parse_config, parse_shard, resolve_environment
    from agent.rundir import RecordError, RunDir, RunDirError, default_run_dir

    if shard is not None:
        try:
            parse_shard(shard)
        except ValueError as e:
            raise SolveFailure(f"--shard: {e}") from None
    if ray_address is not None:
        from agent.ray_runner import RayUnavailable, check_address, require_ray

        try:
            require_ray()  # before anything is written: a missing extra or a wrong address is not a run to resume
            check_address(ray_address)
        except RayUnavailable as e:
            raise SolveFailure(str(e)) from None
    try:
        if resume is not None:
            rd = RunDir.open_existing(resume)
            cfg = load_config(rd.config_path)
            own = cfg.data.shard
            if shard is not None and (own is None or parse_shard(own) != parse_shard(shard)):
                raise SolveFailure(
                    f"--shard {shard}: the run in {resume} is {f'shard {own}' if own else 'not a shard'} "
                    f"(data.shard in its config.toml); a resume continues the run's own tasks, give no --shard"
                )
            if config is not None or overrides:
                asked = load_config(config, overrides) if config is not None else parse_config(
                    cfg.model_dump(mode="json"), overrides, source="overrides")
                if asked.prompt.offer_scipy is None:  # resolved when the run was created
                    asked.prompt.offer_scipy = cfg.prompt.offer_scipy
                if config_hash(asked) != config_hash(cfg):
                    raise SolveFailure(
                        f"--resume {resume}: the config given differs from the run's own config.toml "
                        f"(hash {config_hash(asked)} vs {config_hash(cfg)}); resume with no CONFIG and no overrides"
                    )
                # Equal in all that shapes the results; what differs (a server that moved, an API key's
                # variable) is what this session needs, so it is used.
                cfg = asked
        else:
            if config is None:
                raise SolveFailure("give a CONFIG.toml (see runs/quickstart.toml), or --resume RUN_DIR")
            if shard is not None:
                overrides = [*overrides, f'data.shard="{shard.strip()}"']
            cfg = load_config(config, overrides)
    except ConfigError as e:
        raise SolveFailure(str(e)) from None
    except RunDirError as e:
        raise SolveFailure(str(e)) from None
    if cfg.prompt.library:
        from agent.library import LibraryError, read_library

        try:
            read_library(cfg.prompt.library)  # a bad library stops the run before it starts, not each task
        except LibraryError as e:
            raise SolveFailure(f"prompt.library: {e}") from None

    dataset, tasks = select_run_tasks(cfg)
    created_here = resume is None and (out is None or not out.exists())
    try:
        if resume is None:
            rd = RunDir.create(out if out is not None else default_run_dir(cfg.out_root, cfg.name))
            rd.lock()
            cfg = resolve_environment(cfg)
            rd.write_config(config_to_toml(cfg))
            rd.write_args(argv)
        else:
            rd.lock()
            rd.append_args(argv)
    except RunDirError as e:
        raise SolveFailure(str(e)) from None

    done = len(rd.done_task_ids() & {t.id for t in tasks})
    verb = "resuming" if resume is not None else "run directory"
    console.print(escape(f"{verb}: {rd.path}  ({len(tasks)} tasks, {done} already done, config hash {config_hash(cfg)})"))
    try:
        summary = asyncio.run(execute_run(
            cfg, rd, tasks, argv=argv, resumed=resume is not None, dataset_name=dataset.name, live=live,
            data=run_data_provenance(cfg, dataset, tasks), ray_address=ray_address,
        ))
    except RecordError as e:
        raise SolveFailure(
            f"{e}. The run stopped; everything written before is intact. "
            f"Make room, then continue with: arcsynth solve --resume {rd.path}",
            code=EXIT_RECORD_FAILED,
        ) from None
    except KeyboardInterrupt:
        raise SolveFailure(f"interrupted; continue with: arcsynth solve --resume {rd.path}", code=EXIT_INTERRUPTED) from None
    except SolveFailure as e:
        if e.before_start and resume is None:
            # Nothing ran: a directory holding only the config would be a run to
            # 'resume' that never started. Remove what this command wrote.
            _remove_unstarted(rd.path, whole=created_here)
            raise SolveFailure(f"{e}\n(nothing ran; the run directory {rd.path} was removed)", e.code) from None
        raise SolveFailure(f"{e}\n(run directory {rd.path} is kept; continue it with: arcsynth solve --resume {rd.path})", e.code) from None
    _index(rd.path)
    console.print(_summary_table(summary, rd.path))
    console.print(escape(f"what each task and program did: arcsynth show {rd.path} [TASK_ID]  (or browse it: arcsynth view {rd.path})"))
    console.print(escape(f"run directory: {rd.path}"))
    results = rd.read_results()
    if results and all(r.get("status") == "error" for r in results.values()):
        # A run that produced nothing must not look like one that did (scripts, CI).
        reasons = sorted({str(r.get("stop_reason")) for r in results.values()})
        raise SolveFailure(
            f"every task ended in an error, e.g. {reasons[0]}; fix the cause, then retry them with: "
            f"arcsynth solve --resume {rd.path}",
            code=EXIT_ALL_TASKS_FAILED,
        )
    return RunOutcome(rd.path, summary)


def _index(path: Path) -> None:
    """Bring the run index up to date, so `view`, `show` and `report` open the run at once.

    Indexing a huge trace takes a while once; here it is paid at the end of the run, not
    by the first person who opens it. A failure only means they pay it later.
    """
    try:
        from viewer.index import RunIndex, RunIndexError

        RunIndex.open(path).close()
    except (RunIndexError, OSError):
        pass


def _remove_unstarted(path: Path, *, whole: bool) -> None:
    """Remove a run directory this command created and in which no task started."""
    import shutil

    if whole:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():  # an empty --out directory given by the user stays
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def solve(
    # A string, not a Path: with --resume the first override lands here, and a Path would
    # mangle a value holding a URL (`model.base_url="http://..."` loses a slash).
    config: Optional[str] = typer.Argument(None, help="Run config TOML (see runs/quickstart.toml). Optional with --resume.", show_default=False),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides key.path=value, e.g. sampling.temperature=0.8 data.limit=5.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory to create (must be new or empty). Default: OUT_ROOT/NAME-YYYYmmdd-HHMMSS."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory with its own config; finished tasks are not redone."),
    shard: Optional[str] = typer.Option(
        None, "--shard", metavar="K/N",
        help="Solve only shard K of N (0 <= K < N) of the selected tasks, e.g. one job of a Slurm array "
        "(--shard $SLURM_ARRAY_TASK_ID/N); sets data.shard. Join the N run directories with `arcsynth merge`.",
    ),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="Solve the tasks on the nodes of the Ray cluster at ADDRESS (its head's host:port, or 'auto' on one of "
        "its nodes): one sandbox pool and backend per node, `concurrency` tasks per node; this process writes the run "
        "directory. Needs the 'ray' extra on every node; model.base_url must be reachable from each node.",
    ),
) -> None:
    """Solve ARC tasks: sample programs, verify them in the sandbox, refine, vote."""
    overrides = list(overrides or [])
    # `solve --resume DIR k=v`: Typer hands the first override to CONFIG.
    config_path = Path(config) if config is not None else None
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)
        config_path = None
    if resume is not None and out is not None:
        fail("--out and --resume exclude each other: a resumed run writes into its own directory")
    console = stdout_console()
    try:
        run_solve(config_path, overrides, out=out, resume=resume, argv=list(sys.argv), live=sys.stdout.isatty(), console=console,
                  shard=shard, ray_address=ray)
    except SolveFailure as e:
        fail(str(e), code=e.code)
