"""The run index: a SQLite file beside a run's trace that makes the run fast to browse.

``trace.jsonl`` stays the source of truth; ``index.sqlite`` only records where
things are in it (byte offsets) and per-task totals, so a viewer opens a run of
1,000 tasks and 500,000 programs without parsing the trace, and reads a task's
events on demand. The index is built incrementally: it remembers how many bytes
of the trace it has read and :meth:`RunIndex.refresh` reads only what was
appended since (whole lines only; a line being written is left for later). It is
rebuilt from scratch when it is stale (the trace shrank or was replaced), when it
was written by another index schema, or when it is unreadable.

Usage::

    from viewer.index import RunIndex

    with RunIndex.open("runs/quickstart-20260101-000000") as ix:
        head = ix.header()                   # RunHeader: status, model, totals
        for row in ix.tasks():               # TaskRow per task, in run order
            ...
        detail = ix.task("00576224")         # TaskDetail: grids, candidates, votes, attempts
        cand = ix.candidate("00576224", detail.candidates[0].program_id)  # program, prompt, pairs
        hits = ix.search("np.flip")          # SearchHit per (task, program) match
        ix.refresh()                         # pick up events appended by a running solve

Nothing is written into the run directory except ``index.sqlite`` (and SQLite's
short-lived journal); where the directory is not writable the index goes to
``$XDG_CACHE_HOME/arcsynth/index/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from agent.trace import PROGRAM_STATUSES, TRACE_VERSION, TraceDecoder, TraceError, program_status
from arcsynth.render import grid_diff

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

__all__ = [
    "INDEX_NAME", "PROGRAM_STATUSES", "TASK_STATUSES", "AttemptView", "CandidateDetail", "CandidateSummary",
    "Message", "PairView", "RunHeader", "RunIndex", "RunIndexError", "SearchHit", "TaskDetail", "TaskGrids",
    "TaskRow", "VoteGroupView", "VoteTable",
]

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = 1
"""Bump when the tables or what goes into them change: older indexes are rebuilt."""

TASK_STATUSES = ("solved", "train-solved", "unsolved", "skipped", "error", "running", "killed", "pending")
"""``solved``: every test input right (answers known). ``train-solved``: a program passes every
train pair, the test answers are unknown or not all right. ``running``: started, no result yet
(``killed`` when the run is no longer being written). ``pending``: asked for, not started."""

LIVE_MTIME_S = 60.0
"""Without a writer pid to check, a trace written to this recently counts as a running run."""

_FLUSH_LINES = 50_000


class RunIndexError(RuntimeError):
    """The run cannot be read; the message names the directory or file and the reason."""


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class RunHeader:
    """What the header of a run view shows."""

    path: str
    name: str = ""
    status: str = "not started"
    """running | finished | killed | not started"""
    backend: str | None = None
    model: str | None = None
    dataset: str | None = None
    config_hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    started_at: float | None = None
    """Unix time of the first RunStart."""
    elapsed_s: float = 0.0
    """Time the run was being written, summed over its sessions (resumes)."""
    sessions: int = 0
    tasks: int = 0
    """Tasks the run was asked to solve (or seen in the trace when the list is not recorded)."""
    tasks_done: int = 0
    solved: int = 0
    train_solved: int = 0
    tasks_scored: int = 0
    score: float | None = None
    """Pass@2 score summed over tasks, when test answers are known."""
    programs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    """Programs per status (PROGRAM_STATUSES, every key present)."""
    task_status_counts: dict[str, int] = field(default_factory=dict)
    trace_bytes: int = 0
    trace_version: int | None = None
    """Highest format version among the trace's events."""


@dataclass(frozen=True)
class TaskRow:
    """One line of the task list."""

    task_id: str
    status: str
    score: float | None
    programs: int
    passing: int
    best_train_accuracy: float | None
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    stop_reason: str | None
    status_counts: dict[str, int]
    attempt: int
    """How many times the task was started (resumes redo unfinished tasks); the last one counts."""
    order: int
    """Position in the run (the order tasks were asked for, then first seen)."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TaskGrids:
    """A task's grids from its dataset; ``test_outputs`` entries are None when unknown."""

    train_inputs: list[list[list[int]]]
    train_outputs: list[list[list[int]]]
    test_inputs: list[list[list[int]]]
    test_outputs: list[list[list[int]] | None]


@dataclass(frozen=True)
class CandidateSummary:
    """A program of a task, with its verdict summary (one node of the lineage tree)."""

    program_id: str
    request_id: str
    round: int
    index: int
    parent_ids: list[str]
    status: str
    detail: str
    train_accuracy: float | None
    pairs_passed: int | None
    pair_statuses: list[str]
    """Status per train pair (pass, wrong, error, timeout, invalid_output); empty when not run."""
    duplicate_of: str | None
    behaviour_duplicate_of: str | None
    completion_tokens: int
    finish_reason: str | None


@dataclass(frozen=True)
class VoteGroupView:
    output: list[list[int]]
    program_ids: list[str]
    weight: float
    passing: bool
    behaviours: int
    correct: bool | None
    """This output equals the known test answer (None when unknown)."""


@dataclass(frozen=True)
class VoteTable:
    """The vote on one test input, best group first."""

    test_index: int
    groups: list[VoteGroupView]


@dataclass(frozen=True)
class AttemptView:
    """The two attempts for one test input."""

    test_index: int
    attempt_1: list[list[int]]
    attempt_2: list[list[int]]
    sources: list[str]
    correct_1: bool | None
    correct_2: bool | None


@dataclass(frozen=True)
class TaskDetail:
    """Everything about one task's last attempt, loaded on demand."""

    row: TaskRow
    grids: TaskGrids | None
    grids_error: str | None
    """Why the grids could not be loaded from the run's dataset (None when they were)."""
    candidates: list[CandidateSummary]
    votes: list[VoteTable]
    attempts: list[AttemptView]
    reason: str | None
    """Why the task was skipped or ended in an error."""
    conversations: list["ConversationSummary"] = field(default_factory=list)
    """The task's REPL attempts (search.mode 'repl'), in attempt order."""

    @property
    def task_id(self) -> str:
        return self.row.task_id

    def children(self) -> dict[str | None, list[str]]:
        """The lineage tree: parent program id (None for first-round roots) -> child ids, in order.

        A refinement shown several parents is listed under each of them.
        """
        tree: dict[str | None, list[str]] = {}
        for c in self.candidates:
            for p in c.parent_ids or [None]:
                tree.setdefault(p, []).append(c.program_id)
        return tree

    def rounds(self) -> dict[int, list[CandidateSummary]]:
        out: dict[int, list[CandidateSummary]] = {}
        for c in self.candidates:
            out.setdefault(c.round, []).append(c)
        return out


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    reasoning: str | None = None


@dataclass(frozen=True)
class ConversationSummary:
    """One REPL attempt: how it ended and what it cost."""

    conversation: str
    """'<task>/x<attempt>'."""
    outcome: str
    """'submitted', the limit that ended it, or 'running' while it has no end event."""
    program_id: str | None
    turns: int
    tool_calls: int
    completion_tokens: int
    sandbox_cpu_s: float


@dataclass(frozen=True)
class ToolCallView:
    call: int
    code: str
    status: str
    output: str
    grid: list[list[int]] | None
    cpu_s: float


@dataclass(frozen=True)
class TurnView:
    """One model turn of a REPL conversation and the tool calls its reply made."""

    request_id: str
    text: str
    reasoning: str | None
    completion_tokens: int
    finish_reason: str | None
    tool_calls: list[ToolCallView]


@dataclass(frozen=True)
class ConversationDetail:
    summary: ConversationSummary
    opening: list[Message]
    """The messages the conversation started with (system and task)."""
    turns: list[TurnView]


@dataclass(frozen=True)
class PairView:
    """One input of a candidate: expected | produced | diff."""

    kind: str
    """'train' or 'test'."""
    index: int
    input: list[list[int]] | None
    expected: list[list[int]] | None
    produced: list[list[int]] | None
    status: str
    cell_accuracy: float | None
    error: str | None
    diff: list[list[bool]] | None
    """True where produced differs from expected (same shape only)."""


@dataclass(frozen=True)
class CandidateDetail:
    """One program in full: source, the prompt that made it, the completion, per-pair results."""

    summary: CandidateSummary
    source: str | None
    completion: str | None
    prompt: list[Message]
    prompt_kind: str | None
    sampling: dict[str, Any]
    pairs: list[PairView]
    reasoning: str | None = None
    """The completion's reasoning, when the server returned it apart from the text."""


@dataclass(frozen=True)
class SearchHit:
    """A match of :meth:`RunIndex.search`."""

    task_id: str
    program_id: str | None
    """The program (None for a prompt hit)."""
    request_id: str | None
    where: str
    """'prompt', 'completion' or 'program'."""
    snippet: str


# ---------------------------------------------------------------------------------------
# Helpers


def _index_location(run_dir: Path) -> Path:
    """``RUN_DIR/index.sqlite``, or a cache file when the run directory is not writable."""
    if os.access(run_dir, os.W_OK):
        return run_dir / INDEX_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arcsynth" / "index"
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return cache / f"{run_dir.name}-{key}.sqlite"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _as_list(grid: Any) -> list[list[int]] | None:
    if grid is None:
        return None
    if hasattr(grid, "tolist"):
        return grid.tolist()
    return [list(map(int, row)) for row in grid]


_REPL_TURN = re.compile(r"/x\d+/t\d+/c\d+$")
"""The completion of a REPL turn (request '<task>/x<attempt>/t<turn>')."""


def _conversation_order(conversation: str) -> int:
    tail = conversation.rpartition("/x")[2]
    return int(tail) if tail.isdigit() else 0


def _verdict_status(raw: dict[str, Any]) -> str:
    return program_status("ok", None, raw)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sessions (seq INTEGER PRIMARY KEY, t_start REAL, t_last REAL, run_id TEXT, config_hash TEXT,
    resumed INTEGER, task_ids TEXT, pid INTEGER, host TEXT, ended INTEGER DEFAULT 0, summary TEXT);
CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, ord INTEGER, attempt INTEGER, state TEXT, score REAL,
    solved_train INTEGER, n_programs INTEGER, n_passing INTEGER, best_acc REAL, prompt_tokens INTEGER,
    completion_tokens INTEGER, wall_s REAL, t_start REAL, t_last REAL, stop_reason TEXT, reason TEXT,
    counts TEXT, n_train INTEGER, n_test INTEGER);
CREATE TABLE IF NOT EXISTS programs (task_id TEXT, attempt INTEGER, program_id TEXT, request_id TEXT, round INTEGER,
    status TEXT, train_acc REAL, prog_off INTEGER, prog_len INTEGER, verdict_off INTEGER, verdict_len INTEGER,
    completion_off INTEGER, completion_len INTEGER, completion_tokens INTEGER,
    PRIMARY KEY (task_id, attempt, program_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (task_id TEXT, attempt INTEGER, request_id TEXT, off INTEGER, len INTEGER,
    PRIMARY KEY (task_id, attempt, request_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, task_id TEXT, attempt INTEGER, off INTEGER, len INTEGER, kind TEXT);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id, attempt);
CREATE TABLE IF NOT EXISTS texts (digest TEXT PRIMARY KEY, off INTEGER, len INTEGER) WITHOUT ROWID;
"""

_TASK_COLS = ("task_id", "ord", "attempt", "state", "score", "solved_train", "n_programs", "n_passing", "best_acc",
              "prompt_tokens", "completion_tokens", "wall_s", "t_start", "t_last", "stop_reason", "reason", "counts",
              "n_train", "n_test")


class _TaskState:
    """Totals of a task being indexed (its last attempt)."""

    __slots__ = _TASK_COLS + ("programs", "requests_seen", "dirty_programs", "loaded")

    def __init__(self, task_id: str, ord: int, attempt: int):
        self.task_id, self.ord, self.attempt = task_id, ord, attempt
        self.state = "running"
        self.score = None
        self.solved_train = 0
        self.n_programs = self.n_passing = 0
        self.best_acc = None
        self.prompt_tokens = self.completion_tokens = 0
        self.wall_s = 0.0
        self.t_start = self.t_last = None
        self.stop_reason = self.reason = None
        self.counts: dict[str, int] = {}
        self.n_train = self.n_test = None
        # program_id -> [request_id, round, status, acc, prog_off, prog_len, v_off, v_len, c_off, c_len, c_tokens]
        self.programs: dict[str, list[Any]] = {}
        self.requests_seen: set[str] = set()
        self.dirty_programs: set[str] = set()
        self.loaded = True

    def row(self) -> tuple:
        return tuple(json.dumps(self.counts) if c == "counts" else getattr(self, c) for c in _TASK_COLS)

    def bump(self, status: str, delta: int = 1) -> None:
        self.counts[status] = self.counts.get(status, 0) + delta


class _Texts:
    """A digest -> text mapping that reads TextEvents from the trace on demand."""

    def __init__(self, ix: "RunIndex"):
        self.ix = ix
        self.cache: dict[str, str] = {}

    def __getitem__(self, digest: str) -> str:
        if digest in self.cache:
            return self.cache[digest]
        row = self.ix._db.execute("SELECT off, len FROM texts WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise KeyError(digest)
        raw = self.ix._read_raw(row[0], row[1])
        text = raw.get("text") if isinstance(raw, dict) else None
        if not isinstance(text, str):
            raise KeyError(digest)
        self.cache[digest] = text
        return text

    def __contains__(self, digest: object) -> bool:
        try:
            self[digest]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __setitem__(self, digest: str, text: str) -> None:
        self.cache[digest] = text

    def __delitem__(self, digest: str) -> None:
        self.cache.pop(digest, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache)

    def __len__(self) -> int:
        return len(self.cache)


# ---------------------------------------------------------------------------------------
# The index

_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(fn: _F) -> _F:
    """Serialise calls: a viewer may refresh from a timer while a worker thread loads a task."""
    def wrapper(self: "RunIndex", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__, wrapper.__qualname__ = fn.__name__, fn.__doc__, fn.__qualname__
    return wrapper  # type: ignore[return-value]


class RunIndex:
    """A run directory opened for reading through its index (see the module docstring).

    Open with :meth:`open` (builds or updates the index), close with :meth:`close`
    or a ``with`` block. Calls from several threads are serialised by a lock.
    """

    def __init__(self, run_dir: Path, db: sqlite3.Connection, index_path: Path):
        self.run_dir = run_dir
        self.index_path = index_path
        self.trace_path = run_dir / "trace.jsonl"
        self._db = db
        self._fh: Any = None
        self._config: dict[str, Any] | None = None
        self._provenance: dict[str, Any] | None = None
        self._dataset: Any = None
        self._dataset_error: str | None = None
        self._task_grids_error: str | None = None
        self._active: dict[str, _TaskState] = {}
        self._texts = _Texts(self)
        self._lock = threading.RLock()
        self._state_offset = -1  # the trace offset self._active reflects (-1: none)
        self.read_at_open = 0
        """Trace bytes indexed by :meth:`open` (0 when the index was up to date)."""

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, run_dir: str | Path, *, rebuild: bool = False) -> "RunIndex":
        """Open ``run_dir``, building its index or bringing it up to date.

        Raises :class:`RunIndexError` for a missing directory, a directory that is
        not a run (no trace.jsonl and no config.toml), and a trace in a newer format.
        """
        p = Path(run_dir)
        if not p.exists():
            raise RunIndexError(f"{p}: no such directory")
        if not p.is_dir():
            raise RunIndexError(f"{p} is not a run directory (it is a file)")
        if not (p / "trace.jsonl").is_file() and not (p / "config.toml").is_file():
            raise RunIndexError(f"{p} is not a run directory: it has neither trace.jsonl nor config.toml")
        try:
            index_path = _index_location(p)
        except OSError as e:
            raise RunIndexError(f"cannot create an index for {p}: {e.strerror or e}") from e
        ix = cls(p, cls._connect(index_path, fresh=rebuild), index_path)
        try:
            if not ix._usable():
                ix._db.close()
                ix._db = cls._connect(index_path, fresh=True)
            ix.read_at_open = ix.refresh()
        except BaseException:
            ix.close()
            raise
        return ix

    @staticmethod
    def _connect(path: Path, *, fresh: bool) -> sqlite3.Connection:
        if fresh and path.exists():
            path.unlink()
        try:
            db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=MEMORY")  # the index can always be rebuilt
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA cache_size=-16000")
            if not db.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone():
                db.executescript(_SCHEMA)  # IF NOT EXISTS: another process may be creating it too
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                db.commit()
        except sqlite3.DatabaseError:
            if fresh:
                raise
            return RunIndex._connect(path, fresh=True)  # a torn or foreign file: start over
        return db

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def _head_digest(self, upto: int) -> str:
        with open(self.trace_path, "rb") as f:
            return hashlib.sha256(f.read(min(upto, 4096))).hexdigest()

    def _usable(self) -> bool:
        """The index matches this schema and is a prefix of the current trace."""
        try:
            if self._meta("schema") != str(SCHEMA_VERSION):
                return False
            done = int(self._meta("trace_offset") or 0)
        except (sqlite3.DatabaseError, ValueError):
            return False
        if done == 0:
            return True
        try:
            size = self.trace_path.stat().st_size
        except OSError:
            return False
        if size < done:
            return False  # the trace was cut or replaced
        return self._meta("trace_head") == self._head_digest(done)

    @_locked
    def close(self) -> None:
        """Close the index and the trace."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> "RunIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- incremental indexing ------------------------------------------------------------

    @_locked
    def refresh(self) -> int:
        """Index what was appended to the trace since the last call; return its byte count.

        Cheap when nothing changed (a stat). A trace that shrank or was replaced
        makes the index start over. Only whole lines are read: a line still being
        written is picked up by a later call.
        """
        try:
            size = self.trace_path.stat().st_size
        except FileNotFoundError:
            return 0
        done = int(self._meta("trace_offset") or 0)
        if size == done:
            return 0
        if self._fh is not None:
            self._fh.close()  # the trace may have been replaced: reopen it
            self._fh = None
        # One writer at a time (a viewer and `arcsynth show` may index the same run):
        # take SQLite's write lock, then look again at how far the index got.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            done = int(self._meta("trace_offset") or 0)
            if size == done:
                self._db.rollback()
                return 0
            if size < done or (done and self._meta("trace_head") != self._head_digest(done)):
                done = 0  # the trace was cut or replaced: start over
            if done != self._state_offset:
                self._active.clear()  # another process indexed since: reload from the tables
            return self._index_from(done)
        except BaseException:
            if self._db.in_transaction:
                self._db.rollback()
            self._active.clear()
            self._state_offset = -1
            raise

    def _load_active(self) -> None:
        """Tasks without a result, as the index left them (for appending to them)."""
        self._active.clear()
        rows = self._db.execute(f"SELECT {', '.join(_TASK_COLS)} FROM tasks WHERE state = 'running'").fetchall()
        for row in rows:
            st = _TaskState(row[0], row[1], row[2])
            for col, val in zip(_TASK_COLS, row):
                setattr(st, col, json.loads(val) if col == "counts" else val)
            for p in self._db.execute(
                "SELECT program_id, request_id, round, status, train_acc, prog_off, prog_len, verdict_off, verdict_len, "
                "completion_off, completion_len, completion_tokens FROM programs WHERE task_id = ? AND attempt = ?",
                (st.task_id, st.attempt),
            ):
                st.programs[p[0]] = list(p[1:])
            st.requests_seen = {r[0] for r in self._db.execute(
                "SELECT request_id FROM requests WHERE task_id = ? AND attempt = ?", (st.task_id, st.attempt))}
            self._active[st.task_id] = st

    def _index_from(self, start: int) -> int:
        db = self._db
        if start == 0:
            for table in ("sessions", "tasks", "programs", "requests", "events", "texts"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DROP TABLE IF EXISTS fts")
            db.execute("DELETE FROM meta WHERE key IN ('fts_upto', 'trace_version')")
            self._active.clear()
            self._texts.cache.clear()
        elif not self._active and start != self._state_offset:
            self._load_active()
        attempts = dict(db.execute("SELECT task_id, attempt FROM tasks"))
        next_ord = (db.execute("SELECT COALESCE(MAX(ord), -1) FROM tasks").fetchone()[0]) + 1
        session = db.execute("SELECT seq, t_last FROM sessions ORDER BY seq DESC LIMIT 1").fetchone()
        seq, t_last = (session[0], session[1]) if session else (0, None)
        max_version = int(self._meta("trace_version") or 0)
        events: list[tuple] = []
        texts: list[tuple] = []
        pending_texts: list[int] = []  # rows of `events` for texts waiting for the prompt that uses them
        offset = start
        lines = 0
        with open(self.trace_path, "rb") as f:
            f.seek(start)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # being written, or torn by a kill: read it once it is whole
                off, n = offset, len(line)
                offset += n
                lines += 1
                try:
                    raw = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(raw, dict):
                    continue
                v = raw.get("v", 1)
                if isinstance(v, int):
                    if v > TRACE_VERSION:
                        raise RunIndexError(
                            f"{self.trace_path}: trace format version {v} is newer than this arcsynth reads "
                            f"(versions 1 to {TRACE_VERSION}); open it with a newer arcsynth")
                    max_version = max(max_version, v)
                kind = raw.get("event")
                t = raw.get("t") if isinstance(raw.get("t"), (int, float)) else None
                if t is not None and seq:
                    t_last = t
                if kind == "run_start":
                    if seq:
                        db.execute("UPDATE sessions SET t_last = ? WHERE seq = ?", (t_last, seq))
                    seq += 1
                    t_last = t
                    ids = raw.get("task_ids")
                    db.execute(
                        "INSERT INTO sessions (seq, t_start, t_last, run_id, config_hash, resumed, task_ids, pid, host) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (seq, t, t, raw.get("run_id"), raw.get("config_hash"), int(bool(raw.get("resumed"))),
                         json.dumps(ids) if isinstance(ids, list) else None, raw.get("pid"), raw.get("host")))
                    if isinstance(ids, list):
                        for tid in ids:
                            if isinstance(tid, str) and tid not in attempts:
                                attempts[tid] = 0
                                db.execute("INSERT OR IGNORE INTO tasks (task_id, ord, attempt, state, counts, n_programs, "
                                           "n_passing, prompt_tokens, completion_tokens, wall_s) "
                                           "VALUES (?, ?, 0, 'pending', '{}', 0, 0, 0, 0, 0)", (tid, next_ord))
                                next_ord += 1
                    continue
                if kind == "run_end":
                    if seq:
                        db.execute("UPDATE sessions SET ended = 1, t_last = ?, summary = ? WHERE seq = ?",
                                   (t, json.dumps(raw.get("summary")), seq))
                    continue
                if kind == "text":
                    d = raw.get("digest")
                    if isinstance(d, str):
                        texts.append((d, off, n))
                        pending_texts.append(len(events))
                        events.append([None, None, off, n, "text"])
                    continue
                tid = raw.get("task_id")
                if not isinstance(tid, str):
                    continue
                if kind == "task_start":
                    attempt = attempts.get(tid, 0) + 1
                    attempts[tid] = attempt
                    old = db.execute("SELECT ord FROM tasks WHERE task_id = ?", (tid,)).fetchone()
                    if old is not None:
                        ord_ = old[0]
                    else:
                        ord_, next_ord = next_ord, next_ord + 1
                    st = _TaskState(tid, ord_, attempt)
                    st.t_start = st.t_last = t
                    st.n_train, st.n_test = raw.get("n_train"), raw.get("n_test")
                    self._active[tid] = st
                else:
                    st = self._active.get(tid)
                    if st is None:
                        continue  # an event of a task whose start was lost: nothing to attach it to
                    if t is not None:
                        st.t_last = t
                if kind == "prompt":
                    for i in pending_texts:
                        events[i][0], events[i][1] = tid, st.attempt
                    pending_texts.clear()
                events.append((tid, st.attempt, off, n, kind))
                self._apply(st, kind, raw, off, n)
                if lines % _FLUSH_LINES == 0:
                    self._flush(events, texts)
                    events, texts = [], []
        if seq:
            db.execute("UPDATE sessions SET t_last = ? WHERE seq = ? AND ended = 0", (t_last, seq))
        self._flush(events, texts)
        self._set_meta("trace_offset", offset)
        if offset:
            self._set_meta("trace_head", self._head_digest(offset))
        self._set_meta("trace_version", max_version)
        db.commit()
        self._state_offset = offset
        return offset - start

    def _apply(self, st: _TaskState, kind: str, raw: dict[str, Any], off: int, n: int) -> None:
        if kind == "prompt":
            rid = raw.get("request_id")
            self._db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?)", (st.task_id, st.attempt, rid, off, n))
        elif kind == "completion":
            rid, idx = raw.get("request_id"), raw.get("index")
            ctoks = int(raw.get("completion_tokens") or 0)
            st.completion_tokens += ctoks
            if rid not in st.requests_seen:
                st.requests_seen.add(rid)
                st.prompt_tokens += int(raw.get("prompt_tokens") or 0)
            pid = f"{rid}/c{idx}"
            st.programs[pid] = [rid, None, None, None, None, None, None, None, off, n, ctoks]
            st.dirty_programs.add(pid)  # its program event may come after the next refresh
        elif kind == "program":
            pid = str(raw.get("program_id"))
            rec = st.programs.get(pid)
            if rec is None:
                rec = st.programs[pid] = [pid.rpartition("/c")[0], None, None, None, None, None, None, None, None, None, 0]
            status = raw.get("status", "ok")
            if status == "ok" and raw.get("duplicate_of"):
                status = "duplicate"
            if rec[2] is not None:
                st.bump(rec[2], -1)
            else:
                st.n_programs += 1
            rec[1], rec[2], rec[4], rec[5] = raw.get("round"), status, off, n
            st.bump(status)
            st.dirty_programs.add(pid)
        elif kind == "verdict":
            pid = str(raw.get("program_id"))
            rec = st.programs.get(pid)
            if rec is None:
                return
            status = _verdict_status(raw)
            if rec[2] is not None:
                st.bump(rec[2], -1)
            acc = raw.get("train_accuracy")
            rec[2], rec[3], rec[6], rec[7] = status, acc, off, n
            st.bump(status)
            if isinstance(acc, (int, float)):
                st.best_acc = acc if st.best_acc is None else max(st.best_acc, acc)
            if status == "pass":
                st.n_passing += 1
            st.dirty_programs.add(pid)
        elif kind == "task_skipped":
            st.state, st.reason = "skipped", raw.get("reason")
        elif kind == "task_error":
            st.state, st.reason = "error", raw.get("reason")
        elif kind == "task_result":
            st.score = raw.get("score")
            st.solved_train = int(bool(raw.get("solved_train")))
            for key in ("n_programs", "n_passing", "prompt_tokens", "completion_tokens"):
                if isinstance(raw.get(key), int):
                    setattr(st, key, raw[key])
            st.wall_s = float(raw.get("wall_s") or 0.0)
            st.stop_reason = raw.get("stop_reason")
            if st.state == "running":
                st.state = "done"

    def _flush(self, events: list, texts: list) -> None:
        db = self._db
        if texts:
            db.executemany("INSERT OR IGNORE INTO texts VALUES (?, ?, ?)", texts)
        if events:
            db.executemany("INSERT INTO events (task_id, attempt, off, len, kind) VALUES (?, ?, ?, ?, ?)", events)
        finished = []
        for tid, st in self._active.items():
            if st.state == "running" and st.t_start is not None and st.t_last is not None:
                st.wall_s = st.t_last - st.t_start
            db.execute(f"INSERT OR REPLACE INTO tasks ({', '.join(_TASK_COLS)}) VALUES ({', '.join('?' * len(_TASK_COLS))})",
                       st.row())
            if st.dirty_programs:
                db.executemany(
                    "INSERT OR REPLACE INTO programs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(tid, st.attempt, pid, *st.programs[pid]) for pid in st.dirty_programs])
                st.dirty_programs.clear()
            if st.state != "running":
                finished.append(tid)
        for tid in finished:
            del self._active[tid]

    # -- reading the trace ---------------------------------------------------------------

    def _read_raw(self, off: int, n: int) -> Any:
        if self._fh is None:
            self._fh = open(self.trace_path, "rb")
        self._fh.seek(off)
        try:
            return json.loads(self._fh.read(n))
        except ValueError:
            return None

    def _decoder(self) -> TraceDecoder:
        return TraceDecoder(self._texts, where=str(self.trace_path))

    # -- the run -------------------------------------------------------------------------

    def _run_files(self) -> None:
        if self._config is None:
            try:
                self._config = tomllib.loads((self.run_dir / "config.toml").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._config = {}
            try:
                self._provenance = json.loads((self.run_dir / "provenance.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._provenance = {}

    def _run_status(self) -> str:
        last = self._db.execute("SELECT ended, pid, host FROM sessions ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            return "not started"
        ended, pid, host = last
        if ended:
            return "finished"
        if pid and host:
            if host == socket.gethostname():
                return "running" if _pid_alive(int(pid)) else "killed"
        try:
            age = time.time() - self.trace_path.stat().st_mtime
        except OSError:
            return "killed"
        return "running" if age < LIVE_MTIME_S else "killed"

    @_locked
    def header(self) -> RunHeader:
        """The run's header: identity, status, totals over the task rows."""
        self._run_files()
        cfg, prov = self._config or {}, self._provenance or {}
        sessions = self._db.execute("SELECT t_start, t_last, config_hash, task_ids FROM sessions ORDER BY seq").fetchall()
        elapsed = sum((b or a or 0) - (a or 0) for a, b, _, _ in sessions)
        status = self._run_status()
        if status == "running" and sessions and sessions[-1][0]:
            elapsed += max(0.0, time.time() - (sessions[-1][1] or sessions[-1][0]))
        rows = self.tasks()
        counts = {s: 0 for s in PROGRAM_STATUSES}
        tcounts = {s: 0 for s in TASK_STATUSES}
        for r in rows:
            tcounts[r.status] = tcounts.get(r.status, 0) + 1
            for k, v in r.status_counts.items():
                counts[k] = counts.get(k, 0) + v
        scored = [r.score for r in rows if r.score is not None]
        model_cfg = cfg.get("model") or {}
        prov_model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
        git = prov.get("git") if isinstance(prov.get("git"), dict) else {}
        task_ids = json.loads(sessions[-1][3]) if sessions and sessions[-1][3] else None
        return RunHeader(
            path=str(self.run_dir), name=str(cfg.get("name") or self.run_dir.name), status=status,
            backend=prov_model.get("backend") or model_cfg.get("backend"),
            model=prov_model.get("model_id") or model_cfg.get("model"),
            dataset=(cfg.get("data") or {}).get("dataset"),
            config_hash=(sessions[-1][2] if sessions else None) or prov.get("config_hash"),
            git_commit=git.get("commit"), git_dirty=git.get("dirty"),
            started_at=sessions[0][0] if sessions else None, elapsed_s=float(elapsed), sessions=len(sessions),
            tasks=len(task_ids) if task_ids else len(rows),
            tasks_done=sum(r.status not in ("running", "killed", "pending") for r in rows),
            solved=tcounts.get("solved", 0), train_solved=sum(1 for r in rows if r.passing > 0),
            tasks_scored=len(scored), score=float(sum(scored)) if scored else None,
            programs=sum(r.programs for r in rows), prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows), status_counts=counts,
            task_status_counts=tcounts, trace_bytes=int(self._meta("trace_offset") or 0),
            trace_version=int(self._meta("trace_version") or 0) or None,
        )

    def _row(self, r: tuple, running: bool) -> TaskRow:
        (task_id, ord_, attempt, state, score, solved_train, n_programs, n_passing, best_acc, ptok, ctok, wall_s,
         _t0, _t1, stop_reason, reason, counts, _ntr, _nte) = r
        if state == "done":
            if score is not None and score >= 1.0 - 1e-9:
                status = "solved"
            elif solved_train:
                status = "train-solved"
            else:
                status = "unsolved"
        elif state == "running":
            status = "running" if running else "killed"
        else:
            status = state
        return TaskRow(
            task_id=task_id, status=status, score=score, programs=n_programs or 0, passing=n_passing or 0,
            best_train_accuracy=best_acc, prompt_tokens=ptok or 0, completion_tokens=ctok or 0, wall_s=wall_s or 0.0,
            stop_reason=stop_reason or reason, status_counts=json.loads(counts or "{}"), attempt=attempt or 0, order=ord_,
        )

    @_locked
    def tasks(self) -> list[TaskRow]:
        """Every task of the run, in run order (pending ones included when the run recorded its task list)."""
        running = self._run_status() == "running"
        rows = self._db.execute(f"SELECT {', '.join(_TASK_COLS)} FROM tasks ORDER BY ord").fetchall()
        return [self._row(r, running) for r in rows]

    @_locked
    def task_row(self, task_id: str) -> TaskRow:
        r = self._db.execute(f"SELECT {', '.join(_TASK_COLS)} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        if r is None:
            raise RunIndexError(f"{self.run_dir}: no task {task_id!r} in this run")
        return self._row(r, self._run_status() == "running")

    # -- one task ------------------------------------------------------------------------

    @_locked
    def task_grids(self, task_id: str) -> TaskGrids | None:
        """The task's grids from the run's dataset (None when it cannot be loaded; see grids_error)."""
        if self._dataset is None and self._dataset_error is None:
            self._run_files()
            spec = ((self._config or {}).get("data") or {}).get("dataset")
            if not spec:
                self._dataset_error = "the run's config names no dataset"
            else:
                try:
                    from arcsynth.datasets import BUILTIN_DATASETS, load_dataset

                    if spec not in BUILTIN_DATASETS and not Path(spec).expanduser().is_absolute():
                        # A relative path is relative to where the solve ran (args.json), when found there.
                        try:
                            cwd = json.loads((self.run_dir / "args.json").read_text(encoding="utf-8")).get("cwd")
                        except (OSError, ValueError, AttributeError):
                            cwd = None
                        if cwd and not Path(spec).exists() and (Path(cwd) / spec).exists():
                            spec = str(Path(cwd) / spec)
                    self._dataset = load_dataset(spec, lenient=True)
                except Exception as e:  # noqa: BLE001 - the dataset is optional for viewing
                    self._dataset_error = f"dataset {spec} cannot be loaded: {e}"
        if self._dataset is None or task_id not in self._dataset:
            if self._dataset is not None:
                self._task_grids_error = f"task {task_id} is not in dataset {self._dataset.name}"
            return None
        task = self._dataset.get(task_id)
        return TaskGrids(
            train_inputs=[_as_list(p.input) for p in task.train],  # type: ignore[misc]
            train_outputs=[_as_list(p.output) for p in task.train],  # type: ignore[misc]
            test_inputs=[_as_list(p.input) for p in task.test],  # type: ignore[misc]
            test_outputs=[_as_list(p.output) for p in task.test],
        )

    def _task_events(self, task_id: str, kinds: tuple[str, ...] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        row = self.task_row(task_id)
        q = "SELECT off, len, kind FROM events WHERE task_id = ? AND attempt = ?"
        for off, n, kind in self._db.execute(q + " ORDER BY off", (task_id, row.attempt)).fetchall():
            if kinds is not None and kind not in kinds:
                continue
            raw = self._read_raw(off, n)
            if isinstance(raw, dict):
                yield off, raw

    @_locked
    def task(self, task_id: str) -> TaskDetail:
        """A task's last attempt: grids, candidates with verdict summaries, votes and attempts."""
        row = self.task_row(task_id)
        self._task_grids_error: str | None = None
        grids = self.task_grids(task_id)
        grids_error = None if grids is not None else (self._task_grids_error or self._dataset_error)
        answers = grids.test_outputs if grids is not None else []
        completions: dict[str, dict[str, Any]] = {}
        programs: dict[str, dict[str, Any]] = {}
        verdicts: dict[str, dict[str, Any]] = {}
        votes: list[VoteTable] = []
        attempts: list[AttemptView] = []
        reason = None
        for _off, raw in self._task_events(task_id, ("completion", "program", "verdict", "vote", "attempts",
                                                       "task_skipped", "task_error")):
            kind = raw.get("event")
            if kind == "completion":
                completions[f"{raw.get('request_id')}/c{raw.get('index')}"] = raw
            elif kind == "program":
                programs[str(raw.get("program_id"))] = raw
            elif kind == "verdict":
                verdicts[str(raw.get("program_id"))] = raw
            elif kind == "vote":
                ti = int(raw.get("test_index") or 0)
                answer = answers[ti] if ti < len(answers) else None
                votes.append(VoteTable(ti, [
                    VoteGroupView(output=g.get("output"), program_ids=list(g.get("program_ids") or []),
                                  weight=float(g.get("weight") or 0), passing=bool(g.get("passing")),
                                  behaviours=int(g.get("behaviours") or 0),
                                  correct=None if answer is None else g.get("output") == answer)
                    for g in raw.get("groups") or []]))
            elif kind == "attempts":
                for ti, a in enumerate(raw.get("attempts") or []):
                    answer = answers[ti] if ti < len(answers) else None
                    srcs = (raw.get("sources") or [])
                    attempts.append(AttemptView(
                        ti, a.get("attempt_1"), a.get("attempt_2"), list(srcs[ti]) if ti < len(srcs) else [],
                        None if answer is None else a.get("attempt_1") == answer,
                        None if answer is None else a.get("attempt_2") == answer))
            elif kind in ("task_skipped", "task_error"):
                reason = raw.get("reason")
        # A REPL turn's reply is a program only when it submits; the others belong to its conversation.
        ids = list(programs) + [pid for pid in completions if pid not in programs and not _REPL_TURN.search(pid)]
        cands = [self._summary(pid, programs.get(pid), completions.get(pid), verdicts.get(pid)) for pid in ids]
        return TaskDetail(row=row, grids=grids, grids_error=grids_error, candidates=cands, votes=votes,
                          attempts=attempts, reason=reason, conversations=self._conversations(task_id))

    def _conversations(self, task_id: str) -> list[ConversationSummary]:
        ends: dict[str, dict[str, Any]] = {}
        turns: dict[str, int] = {}
        for _off, raw in self._task_events(task_id, ("repl_end", "prompt")):
            if raw.get("event") == "repl_end":
                ends[str(raw.get("conversation"))] = raw
            elif raw.get("kind") == "repl":
                conv = str(raw.get("request_id", "")).rpartition("/t")[0]
                turns[conv] = turns.get(conv, 0) + 1
        out = []
        for conv in sorted(set(ends) | set(turns), key=_conversation_order):
            e = ends.get(conv, {})
            out.append(ConversationSummary(
                conversation=conv, outcome=str(e.get("outcome", "running")), program_id=e.get("program_id"),
                turns=int(e.get("turns", turns.get(conv, 0))), tool_calls=int(e.get("tool_calls", 0)),
                completion_tokens=int(e.get("completion_tokens", 0)), sandbox_cpu_s=float(e.get("sandbox_cpu_s", 0.0))))
        return out

    @_locked
    def conversation(self, task_id: str, conversation: str) -> ConversationDetail:
        """One REPL attempt in full: its opening messages, and per turn the reply, its reasoning and its tool calls.

        ``conversation``: '<task>/x<attempt>' or 'x<attempt>'.
        """
        if not conversation.startswith(f"{task_id}/"):
            conversation = f"{task_id}/{conversation}"
        summary = next((c for c in self._conversations(task_id) if c.conversation == conversation), None)
        if summary is None:
            raise RunIndexError(f"{self.run_dir}: task {task_id} has no REPL conversation {conversation!r}")
        dec = self._decoder()
        opening: list[Message] = []
        turns: dict[str, dict[str, Any]] = {}
        calls: dict[str, list[ToolCallView]] = {}
        prefix = conversation + "/t"
        for _off, raw in self._task_events(task_id, ("prompt", "completion", "tool_call")):
            rid = str(raw.get("request_id", ""))
            if not rid.startswith(prefix):
                continue
            kind = raw.get("event")
            if kind == "prompt" and rid == prefix + "0":
                try:
                    ev = dec.decode(raw)
                except TraceError as e:
                    raise RunIndexError(str(e)) from None
                opening = [Message(m.get("role", ""), m.get("content", ""), m.get("reasoning")) for m in getattr(ev, "messages", [])]
            elif kind == "completion":
                turns[rid] = raw
            elif kind == "tool_call":
                calls.setdefault(rid, []).append(ToolCallView(
                    call=int(raw.get("call", 0)), code=str(raw.get("code", "")), status=str(raw.get("status", "")),
                    output=str(raw.get("output", "")), grid=raw.get("grid"), cpu_s=float(raw.get("cpu_s") or 0.0)))
        views = [
            TurnView(request_id=rid, text=str(c.get("text", "")), reasoning=c.get("reasoning"),
                     completion_tokens=int(c.get("completion_tokens") or 0), finish_reason=c.get("finish_reason"),
                     tool_calls=calls.get(rid, []))
            for rid, c in sorted(turns.items(), key=lambda kv: int(kv[0].rpartition("/t")[2] or 0))
        ]
        return ConversationDetail(summary=summary, opening=opening, turns=views)

    @staticmethod
    def _summary(pid: str, prog: dict | None, comp: dict | None, verdict: dict | None) -> CandidateSummary:
        rid, _, idx = pid.rpartition("/c")
        rnd = prog.get("round") if prog else None
        if rnd is None:
            part = rid.rpartition("/r")[2].split("/")[0]
            rnd = int(part) if part.isdigit() else 0
        if prog is None:
            status = "ok"
        else:
            status = prog.get("status", "ok")
            if status == "ok" and prog.get("duplicate_of"):
                status = "duplicate"
        if verdict is not None:
            status = _verdict_status(verdict)
        return CandidateSummary(
            program_id=pid, request_id=rid, round=int(rnd), index=int(idx) if idx.isdigit() else 0,
            parent_ids=list((prog or {}).get("parent_ids") or []), status=status, detail=(prog or {}).get("detail") or "",
            train_accuracy=verdict.get("train_accuracy") if verdict else None,
            pairs_passed=verdict.get("pairs_passed") if verdict else None,
            pair_statuses=[p.get("status") for p in (verdict or {}).get("train") or []],
            duplicate_of=(prog or {}).get("duplicate_of"),
            behaviour_duplicate_of=verdict.get("behaviour_duplicate_of") if verdict else None,
            completion_tokens=int((comp or {}).get("completion_tokens") or 0),
            finish_reason=(comp or {}).get("finish_reason"),
        )

    @_locked
    def candidate(self, task_id: str, program_id: str) -> CandidateDetail:
        """One program of a task in full: source, prompt messages, completion, per-pair data."""
        row = self.task_row(task_id)
        rec = self._db.execute(
            "SELECT prog_off, prog_len, verdict_off, verdict_len, completion_off, completion_len, request_id "
            "FROM programs WHERE task_id = ? AND attempt = ? AND program_id = ?", (task_id, row.attempt, program_id),
        ).fetchone()
        if rec is None:
            raise RunIndexError(f"{self.run_dir}: task {task_id} has no program {program_id!r}")
        prog_off, prog_len, v_off, v_len, c_off, c_len, rid = rec
        dec = self._decoder()
        comp = self._read_raw(c_off, c_len) if c_off is not None else None
        prog = self._read_raw(prog_off, prog_len) if prog_off is not None else None
        verdict = self._read_raw(v_off, v_len) if v_off is not None else None
        req = self._db.execute("SELECT off, len FROM requests WHERE task_id = ? AND attempt = ? AND request_id = ?",
                               (task_id, row.attempt, rid)).fetchone()
        prompt_raw = self._read_raw(*req) if req else None
        try:
            comp_ev = dec.decode(comp) if comp else None
            prog_ev = dec.decode(prog) if prog else None
            prompt_ev = dec.decode(prompt_raw) if prompt_raw else None
        except TraceError as e:
            raise RunIndexError(str(e)) from None
        grids = self.task_grids(task_id)
        pairs: list[PairView] = []
        if verdict:
            for kind in ("train", "test"):
                for i, pv in enumerate(verdict.get(kind) or []):
                    inp = exp = None
                    if grids is not None:
                        ins = grids.train_inputs if kind == "train" else grids.test_inputs
                        outs = grids.train_outputs if kind == "train" else grids.test_outputs
                        inp = ins[i] if i < len(ins) else None
                        exp = outs[i] if i < len(outs) else None
                    produced = pv.get("output")
                    pairs.append(PairView(kind, i, inp, exp, produced, pv.get("status", "?"), pv.get("cell_accuracy"),
                                          pv.get("error"), grid_diff(exp, produced)))
        return CandidateDetail(
            summary=self._summary(program_id, prog, comp, verdict),
            source=getattr(prog_ev, "source", None), completion=getattr(comp_ev, "text", None),
            prompt=[Message(m.get("role", ""), m.get("content", ""), m.get("reasoning")) for m in getattr(prompt_ev, "messages", []) or []],
            prompt_kind=getattr(prompt_ev, "kind", None), sampling=dict(getattr(prompt_ev, "sampling", {}) or {}),
            pairs=pairs, reasoning=getattr(comp_ev, "reasoning", None),
        )

    # -- search --------------------------------------------------------------------------

    def _ensure_fts(self) -> None:
        db = self._db
        if not db.execute("SELECT name FROM sqlite_master WHERE name='fts'").fetchone():
            db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(body, content='', tokenize='unicode61')")
        if db.in_transaction:
            db.commit()
        while True:  # in slices, so memory stays flat on a run of millions of events
            db.execute("BEGIN IMMEDIATE")  # another process may be filling it too: one at a time
            try:
                last = int(self._meta("fts_upto") or 0)
                rows = db.execute(
                    "SELECT id, off, len, kind FROM events WHERE id > ? AND kind IN ('prompt', 'completion', 'program', 'text') "
                    "ORDER BY id LIMIT 20000", (last,)).fetchall()
                if not rows:
                    db.rollback()
                    break
                batch: list[tuple[int, str]] = []
                for eid, off, n, kind in rows:
                    raw = self._read_raw(off, n)
                    if not isinstance(raw, dict):
                        continue
                    body = self._body(raw, kind, literal_only=True)
                    if body:
                        batch.append((eid, body))
                db.executemany("INSERT INTO fts (rowid, body) VALUES (?, ?)", batch)
                self._set_meta("fts_upto", rows[-1][0])
                db.commit()
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise

    def _body(self, raw: dict[str, Any], kind: str, *, literal_only: bool) -> str:
        """The searchable text of an event. ``literal_only``: a v2 prompt without its referenced texts."""
        if kind == "completion":
            return str(raw.get("text") or "")
        if kind == "program":
            return str(raw.get("source") or "")  # a v2 source slice is searched in its completion
        if kind == "text":
            return str(raw.get("text") or "")
        if kind == "prompt":
            if raw.get("messages"):
                return "\n".join(str(m.get("content", "")) for m in raw["messages"])
            out = []
            for m in raw.get("message_parts") or []:
                for part in m.get("parts") or []:
                    if isinstance(part, str):
                        out.append(part)
                    elif not literal_only and isinstance(part, dict):
                        out.append(self._texts[part.get("ref")])
            return "\n".join(out)
        return ""

    @_locked
    def search(self, query: str, *, limit: int = 200) -> list[SearchHit]:
        """Case-insensitive substring search over prompts, completions and programs (last attempts).

        The first call builds a full-text table (it can take a while on a large run);
        later calls only add what was appended. Hits are in trace order, one per
        (task, program) and place. A prompt block shared by many prompts (the system
        text, a task's examples) is stored once and reported once, at the first
        prompt that used it.
        """
        q = query.strip()
        if not q:
            return []
        self._ensure_fts()
        phrase = '"' + q.replace('"', '""') + '"'
        needle = q.casefold()
        attempts = dict(self._db.execute("SELECT task_id, attempt FROM tasks"))
        hits: list[SearchHit] = []
        seen: set[tuple[str, str | None, str]] = set()
        try:
            rows = self._db.execute(
                "SELECT e.id, e.task_id, e.attempt, e.off, e.len, e.kind FROM fts JOIN events e ON e.id = fts.rowid "
                "WHERE fts MATCH ? ORDER BY e.id", (phrase,)).fetchall()
        except sqlite3.OperationalError:
            rows = []  # a query made only of separators matches nothing
        for _eid, tid, attempt, off, n, kind in rows:
            if tid is None or attempts.get(tid) != attempt:
                continue
            raw = self._read_raw(off, n)
            if not isinstance(raw, dict):
                continue
            if kind == "text":
                body = str(raw.get("text") or "")
                where, rid, pid = "prompt", None, None
                nxt = self._db.execute("SELECT off, len FROM events WHERE id > ? AND kind = 'prompt' ORDER BY id LIMIT 1",
                                       (_eid,)).fetchone()
                if nxt:
                    rid = (self._read_raw(*nxt) or {}).get("request_id")
            else:
                body = self._body(raw, kind, literal_only=True)
                rid = raw.get("request_id")
                if kind == "completion":
                    where, pid = "completion", f"{rid}/c{raw.get('index')}"
                elif kind == "program":
                    where, pid = "program", raw.get("program_id")
                    rid = str(pid).rpartition("/c")[0]
                else:
                    where, pid = "prompt", None
            at = body.casefold().find(needle)
            if at < 0:
                continue
            key = (tid, pid or rid, where)
            if key in seen:
                continue
            seen.add(key)
            lo, hi = max(0, at - 40), min(len(body), at + len(q) + 40)
            snippet = ("…" if lo else "") + body[lo:hi].replace("\n", "⏎") + ("…" if hi < len(body) else "")
            hits.append(SearchHit(tid, pid, rid, where, snippet))
            if len(hits) >= limit:
                break
        return hits
