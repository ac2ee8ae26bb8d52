"""Run directories: everything a solve run writes, and the recorder the loop writes through.

Layout of a run directory::

    config.toml       the resolved config (resume and replay read it)
    args.json         the command line
    provenance.json   versions, git revision, model, seed, sandbox layers, config hash
    trace.jsonl       every event, appended as it happens (agent.trace)
    results/<id>.json one file per finished task, written atomically
    summary.json      totals over results/ (rewritten at the end of each run or resume)
    programs/<task>/<program>.py  each program that passes every train pair
    submission.json   Kaggle form {task_id: [{attempt_1, attempt_2}, ...]}
    .lock             held (flock) by the process writing the run; holds its pid

``results/`` is the record of what is done: a resume skips exactly the tasks that
have a result file, and summary and submission are rebuilt from those files only,
so nothing is counted twice however often a run is resumed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from agent.trace import PROGRAM_STATUSES, ProgramEvent, TaskResult, TaskStart, TraceWriter, VerdictEvent, _Event, program_status

__all__ = ["Recorder", "RecordError", "RunDir", "RunDirError", "atomic_write_text", "default_run_dir"]

CONFIG = "config.toml"
ARGS = "args.json"
PROVENANCE = "provenance.json"
TRACE = "trace.jsonl"
RESULTS = "results"
PROGRAMS = "programs"
SUMMARY = "summary.json"
SUBMISSION = "submission.json"
LOCK = ".lock"

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class RunDirError(RuntimeError):
    """A run directory cannot be created, opened or written. The message names the path."""


class RecordError(RunDirError):
    """Writing the run record failed (disk full, directory gone or read-only).

    The run must stop: continuing would do work that is not recorded. What was already
    written stays intact, so the run can be resumed once there is room.
    """


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "not writable (permission denied or read-only file system)"
    if e.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return e.strerror or str(e)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file + ``os.replace``.

    Readers (and a process killed mid-write) see either the old file or the new one,
    never a torn one. On failure the temp file is removed and :class:`RecordError`
    names the path; the old file is untouched.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise RecordError(f"cannot write {path}: {_os_reason(e)}") from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def default_run_dir(out_root: str | Path, name: str, now: datetime | None = None) -> Path:
    """``<out_root>/<name>-YYYYmmdd-HHMMSS`` (UTC); a ``-2``, ``-3``... suffix if taken."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    base = Path(out_root) / f"{name}-{stamp}"
    path, k = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{k}")
        k += 1
    return path


def program_file_name(program_id: str) -> str:
    """``programs/<task>/<this>``: the program id without its task, ``/`` and unsafe characters as ``-``.

    ``00576224/r1/q0/c3`` -> ``r1-q0-c3.py``.
    """
    tail = program_id.split("/", 1)[1] if "/" in program_id else program_id
    safe = re.sub(r"[^A-Za-z0-9_.]+", "-", tail).strip("-.") or "program"
    return f"{safe}.py"


def task_file_name(task_id: str) -> str:
    """The result file name of a task; refuses ids that are not safe file names."""
    if not _SAFE_ID.fullmatch(task_id):
        raise RunDirError(f"task id {task_id!r} cannot be used as a file name")
    return f"{task_id}.json"


class RunDir:
    """One run directory (see the module docstring for its layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the run directory for this process while it writes the run.

        Two processes appending to one trace (a ``--resume`` started while the run is
        still going) would interleave their events and results. The lock is an ``flock``
        on ``.lock``: the kernel drops it when the process ends, even by ``kill -9``, so a
        crashed run never stays locked.
        """
        if self._lock_fd is not None:
            return
        import fcntl

        target = self.path / LOCK
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot lock run directory {self.path}: {_os_reason(e)}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            except OSError:
                holder = "?"
            os.close(fd)
            raise RunDirError(
                f"run directory {self.path} is being written by another arcsynth process (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def trace_path(self) -> Path:
        return self.path / TRACE

    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    @property
    def run_id(self) -> str:
        return self.path.resolve().name

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path) -> "RunDir":
        """Make a fresh run directory; refuse one that exists and is not empty."""
        p = Path(path)
        if p.exists():
            if not p.is_dir():
                raise RunDirError(f"{p} exists and is not a directory")
            if any(p.iterdir()):
                raise RunDirError(
                    f"{p} exists and is not empty; pass --resume {p} to continue that run, or choose another --out"
                )
        try:
            (p / RESULTS).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {p}: {_os_reason(e)}") from e
        return cls(p)

    @classmethod
    def open_existing(cls, path: str | Path) -> "RunDir":
        """Open a run directory written earlier (for resume, replay, reading)."""
        p = Path(path)
        if not p.is_dir():
            raise RunDirError(f"{p} is not a run directory (no such directory)")
        if not (p / CONFIG).is_file():
            raise RunDirError(f"{p} is not a run directory: it has no {CONFIG}")
        try:
            (p / RESULTS).mkdir(exist_ok=True)
        except OSError:
            pass  # read-only run directories can still be read
        return cls(p)

    # -- files ---------------------------------------------------------------------------
    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        atomic_write_text(target, text)
        return target

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, _dump(obj))

    def read_json(self, name: str) -> Any:
        p = self.path / name
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RunDirError(f"cannot read {p}: {e}") from e

    def write_config(self, toml_text: str) -> Path:
        return self.write_text(CONFIG, toml_text)

    def write_args(self, argv: list[str]) -> Path:
        return self.write_json(ARGS, {"argv": list(argv), "cwd": os.getcwd()})

    def append_args(self, argv: list[str]) -> Path:
        """Record the command line of a resume next to the original one."""
        data = self.read_json(ARGS) or {"argv": None}
        data.setdefault("resumes", []).append({"argv": list(argv), "cwd": os.getcwd(), "t": time.time()})
        return self.write_json(ARGS, data)

    def write_provenance(self, prov: dict[str, Any]) -> Path:
        """Write provenance.json; a resume appends its own under ``resumes``."""
        old = self.read_json(PROVENANCE)
        if old is not None:
            old.setdefault("resumes", []).append(prov)
            prov = old
        return self.write_json(PROVENANCE, prov)

    def write_program(self, task_id: str, program_id: str, source: str, header: str) -> Path:
        """Write ``programs/<task>/<program>.py`` (atomically); ``header`` is a comment line on top."""
        folder = self.path / PROGRAMS / task_file_name(task_id)[: -len(".json")]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RecordError(f"cannot create {folder}: {_os_reason(e)}") from e
        target = folder / program_file_name(program_id)
        atomic_write_text(target, f"# {header}\n{source if source.endswith(chr(10)) else source + chr(10)}")
        return target

    def result_path(self, task_id: str) -> Path:
        return self.results_dir / task_file_name(task_id)

    def write_result(self, task_id: str, result: Any) -> Path:
        text = result if isinstance(result, str) else _dump(result)
        if isinstance(result, str):
            json.loads(text)  # a result must be JSON; fail here, not in a later reader
        target = self.result_path(task_id)
        atomic_write_text(target, text)
        return target

    def done_task_ids(self) -> set[str]:
        """Tasks with a result that a resume does not redo.

        A task that ended in an error (a server that died, a sandbox failure) is
        not done: resuming once the fault is fixed is how the user retries it.
        """
        return {task_id for task_id, result in self.read_results().items() if result.get("status") != "error"}

    def read_results(self) -> dict[str, dict[str, Any]]:
        """Every task result, by task id, in file-name order."""
        out: dict[str, dict[str, Any]] = {}
        if not self.results_dir.is_dir():
            return out
        for p in sorted(self.results_dir.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise RunDirError(f"cannot read task result {p}: {e}") from e
        return out

    def write_submission(self, task_order: Iterable[str] | None = None) -> Path:
        """submission.json from the results' ``attempts`` (Kaggle form), via arcsynth.scoring."""
        from arcsynth.scoring import Attempts, write_submission

        results = self.read_results()
        order = list(task_order) if task_order is not None else list(results)
        submission: dict[str, list[Attempts]] = {}
        for tid in order:
            res = results.get(tid)
            if res is not None and res.get("attempts"):
                submission[tid] = [Attempts(**a) for a in res["attempts"]]
        target = self.path / SUBMISSION
        try:
            write_submission(target, submission)
        except OSError as e:
            raise RecordError(f"cannot write {target}: {_os_reason(e)}") from e
        return target

    def write_summary(self, summary: dict[str, Any]) -> Path:
        return self.write_json(SUMMARY, summary)


class Recorder:
    """What the loop writes through: trace events and finished-task results.

    Safe to call from coroutines of one event loop and from worker threads (a lock
    serialises writes). Listeners (progress displays) see every event after it is on
    disk. The first failed write is kept in ``error`` and raised as
    :class:`RecordError` from that call and every later one, so a run cannot go on
    unrecorded even if a caller swallows one exception.
    """

    def __init__(self, run_dir: RunDir, *, fsync: bool = False):
        self.run_dir = run_dir
        self.error: RecordError | None = None
        self._lock = threading.Lock()
        # Per task: programs per status, and the sources of programs waiting for a verdict
        # (to write the passing ones to programs/). Dropped when the task's result is written.
        self._status_counts: dict[str, dict[str, int]] = {}
        self._waiting: dict[str, dict[str, str]] = {}
        self._listeners: list[Callable[[Any], None]] = []
        try:
            self._trace = TraceWriter(run_dir.trace_path, fsync=fsync)
        except OSError as e:
            raise RunDirError(f"cannot open trace {run_dir.trace_path}: {_os_reason(e)}") from e

    def add_listener(self, fn: Callable[[Any], None]) -> None:
        self._listeners.append(fn)

    def _check(self) -> None:
        if self.error is not None:
            raise RecordError(str(self.error))

    def emit(self, event: _Event) -> None:
        """Append one event to the trace."""
        with self._lock:
            self._check()
            try:
                self._trace.write(event)
            except OSError as e:
                self.error = RecordError(f"cannot write {self._trace.path}: {_os_reason(e)}")
                raise self.error from e
            try:
                self._observe(event)
            except RecordError as e:
                self.error = e
                raise
        for fn in self._listeners:
            fn(event)

    def _observe(self, event: Any) -> None:
        """Count program statuses; write each program that passes every train pair."""
        if isinstance(event, TaskStart):
            self._status_counts[event.task_id] = {s: 0 for s in PROGRAM_STATUSES}
            self._waiting[event.task_id] = {}
        elif isinstance(event, ProgramEvent):
            counts = self._status_counts.setdefault(event.task_id, {s: 0 for s in PROGRAM_STATUSES})
            status = program_status(event.status, event.duplicate_of)
            counts[status] = counts.get(status, 0) + 1
            if status == "ok" and event.source is not None:
                self._waiting.setdefault(event.task_id, {})[event.program_id] = event.source
        elif isinstance(event, VerdictEvent):
            counts = self._status_counts.setdefault(event.task_id, {s: 0 for s in PROGRAM_STATUSES})
            source = self._waiting.get(event.task_id, {}).pop(event.program_id, None)
            if source is None:
                return  # its program event was not seen by this recorder
            status = program_status("ok", None, {"all_train_pass": event.all_train_pass, "train": event.train})
            counts["ok"] -= 1
            counts[status] = counts.get(status, 0) + 1
            if event.all_train_pass:
                self.run_dir.write_program(
                    event.task_id, event.program_id, source,
                    f"task {event.task_id}, program {event.program_id}: passes all {len(event.train)} train pairs",
                )

    def task_done(self, task_id: str, result_json: Any) -> None:
        """Write ``results/<task_id>.json``: from now on the task counts as done.

        A result given as a dict gets ``program_status_counts`` (programs per status).
        """
        with self._lock:
            self._check()
            self._waiting.pop(task_id, None)
            counts = self._status_counts.pop(task_id, None)
            if isinstance(result_json, dict) and counts is not None:
                result_json = {**result_json, "program_status_counts": counts}
            try:
                self.run_dir.write_result(task_id, result_json)
            except RecordError as e:
                self.error = e
                raise

    def close(self) -> None:
        with self._lock:
            self._trace.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summarize_results(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over per-task results (the fields of TaskResult, where present)."""
    fields = TaskResult.model_fields
    n = len(results)
    scored = [r.get("score") for r in results.values() if r.get("score") is not None]

    def total(key: str) -> float:
        return sum(float(r.get(key) or 0) for r in results.values())

    out: dict[str, Any] = {
        "tasks_done": n,
        "tasks_solved_train": sum(bool(r.get("solved_train")) for r in results.values()),
        "tasks_scored": len(scored),
        "score": float(sum(scored)) if scored else None,
        "score_fraction": (float(sum(scored)) / len(scored)) if scored else None,
        "tasks_fully_solved": sum(1 for s in scored if s >= 1.0),
    }
    for key in ("n_programs", "n_passing", "prompt_tokens", "completion_tokens", "wall_s"):
        if key in fields:
            v = total(key)
            out[key] = v if key == "wall_s" else int(v)
    counts = {s: 0 for s in PROGRAM_STATUSES}
    for r in results.values():
        for k, v in (r.get("program_status_counts") or {}).items():
            counts[k] = counts.get(k, 0) + int(v)
    out["program_status_counts"] = counts
    out["stop_reasons"] = {}
    for r in results.values():
        reason = r.get("stop_reason")
        if reason:
            out["stop_reasons"][reason] = out["stop_reasons"].get(reason, 0) + 1
    return out


# ---------------------------------------------------------------------------------------
# Comparing runs (replay checks)

VOLATILE_KEYS = frozenset({"v", "t", "wall_s", "runtime_s", "elapsed_s", "started_at", "behaviour_duplicate_of"})
"""Fields that differ between a run and its replay by nature: the trace format version
(a run recorded in format 1 replays in format 2 with the same content), timings, and
``behaviour_duplicate_of``, which names a program with the same outputs whose
verification had finished when this one's did. Programs of concurrent requests
finish in whatever order the sandbox workers get to them, so that name can only
be fixed by holding every verdict back until all earlier programs are verified,
which would stall the live trace. Nothing downstream depends on it: the loop
picks representatives, parents, vote groups (their program lists included) and
attempt sources by program order, and those are compared."""

ADDED_RESULT_KEYS = ("program_status_counts",)
"""Result fields added after runs were recorded without them: compared only when both have them."""

_COMPARED_EVENTS = ("prompt", "completion", "program", "verdict", "vote", "attempts", "task_skipped", "task_error", "task_result")


def _strip_volatile(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_volatile(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_strip_volatile(v) for v in obj]
    return obj


def _event_key(ev: dict[str, Any]) -> tuple[str, str]:
    kind = ev["event"]
    ident = ev.get("program_id") or ev.get("request_id") or ""
    if kind == "completion":
        ident = f"{ident}#{ev.get('index')}"
    elif kind == "vote":
        ident = f"test{ev.get('test_index')}"
    return kind, ident


def _task_records(rd: RunDir) -> dict[str, dict[tuple[str, str], Any]]:
    from agent.trace import last_attempts, read_trace

    out: dict[str, dict[tuple[str, str], Any]] = {}
    if not rd.trace_path.is_file():
        return out
    for tid, events in last_attempts(read_trace(rd.trace_path)).items():
        recs: dict[tuple[str, str], Any] = {}
        for ev in events:
            if ev.event in _COMPARED_EVENTS:
                d = _strip_volatile(ev.model_dump(mode="json"))
                recs[_event_key(d)] = d
        out[tid] = recs
    return out


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    sa, sb = json.dumps(a)[:80], json.dumps(b)[:80]
    return f"{where}: {sa} vs {sb}"


def compare_runs(a: str | Path | RunDir, b: str | Path | RunDir) -> list[str]:
    """Differences between two runs' results, one line each; ``[]`` when they agree.

    Compared: the set of finished tasks, each task's result (minus timings), the last
    attempt's prompts, completions, programs, verdicts, votes and attempts in the
    trace (keyed by request/program id, so task interleaving does not matter), and
    submission.json. Timings (:data:`VOLATILE_KEYS`) are ignored.
    """
    ra = a if isinstance(a, RunDir) else RunDir(a)
    rb = b if isinstance(b, RunDir) else RunDir(b)
    diffs: list[str] = []
    res_a, res_b = ra.read_results(), rb.read_results()
    for tid in sorted(set(res_a) - set(res_b)):
        diffs.append(f"task {tid}: finished in {ra.path} only")
    for tid in sorted(set(res_b) - set(res_a)):
        diffs.append(f"task {tid}: finished in {rb.path} only")
    for tid in sorted(set(res_a) & set(res_b)):
        x, y = _strip_volatile(res_a[tid]), _strip_volatile(res_b[tid])
        for key in ADDED_RESULT_KEYS:  # a run recorded before the key existed still compares
            if (key in x) != (key in y):
                x.pop(key, None)
                y.pop(key, None)
        if x != y:
            diffs.append(f"task {tid}: result differs at {_first_difference(x, y)}")
    tr_a, tr_b = _task_records(ra), _task_records(rb)
    for tid in sorted(set(res_a) & set(res_b)):
        ea, eb = tr_a.get(tid, {}), tr_b.get(tid, {})
        for key in sorted(set(ea) | set(eb)):
            if key not in eb:
                diffs.append(f"task {tid}: {key[0]} {key[1]} recorded in {ra.path} only")
            elif key not in ea:
                diffs.append(f"task {tid}: {key[0]} {key[1]} recorded in {rb.path} only")
            elif ea[key] != eb[key]:
                diffs.append(f"task {tid}: {key[0]} {key[1]} differs at {_first_difference(ea[key], eb[key])}")
    sub_a, sub_b = ra.read_json(SUBMISSION), rb.read_json(SUBMISSION)
    if sub_a != sub_b:
        diffs.append(f"submission.json differs{'' if sub_a and sub_b else ' (missing in one run)'}")
    return diffs
