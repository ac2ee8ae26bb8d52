"""The run trace: a versioned JSONL file of typed events, one per line.

Every event is written and flushed as it happens, so a killed run loses at most
the event in flight; a torn last line is skipped on read. The field ``event`` is
the tag of the union; ``v`` is the format version. Field order is the file
format: add fields at the end, with defaults, and bump TRACE_VERSION when a
reader of the old version would misread the new one. To add an event: subclass
``_Event`` with a unique ``event`` literal and add it to :data:`Event`.

Version 2 stores what repeats once (:class:`TraceEncoder`): a prompt's messages
are cut into blocks at blank lines, and each long block is written once per run
as a :class:`TextEvent` keyed by its digest, which prompts then refer to
(``message_parts``); a program whose source is a slice of its completion records
the slice (``source_span``) instead of the source. :func:`read_trace` undoes both
(:class:`TraceDecoder`), so every reader sees whole messages and sources, from
version-1 and version-2 files alike. A file of a newer version is refused with
:class:`TraceVersionError` rather than misread.

A resumed run appends to the same file (a new RunStart with ``resumed=True``) and
redoes the tasks that had no result, so a task can have several attempts, each
starting with its TaskStart. Readers must take the LAST attempt of each task
(:func:`last_attempts`); the earlier ones are what a killed process left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Iterator, Literal, MutableMapping, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

TRACE_VERSION = 2
"""Version written. 1: whole prompt messages and program sources in every event.
2: repeated prompt text by digest (:class:`TextEvent`), sources as completion slices."""

DIGEST_CHARS = 24
"""Hex digits of SHA-256 kept in a text digest (96 bits: no collision within any run)."""


class TraceError(RuntimeError):
    """A trace cannot be read; the message names the file and line."""


class TraceVersionError(TraceError):
    """The trace was written by a newer arcsynth, in a format version this one cannot read."""


def text_digest(text: str) -> str:
    """The key of a :class:`TextEvent`: the first DIGEST_CHARS hex digits of SHA-256 (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


PROGRAM_STATUSES = ("ok", "no_code", "syntax_error", "no_transform", "duplicate", "timeout", "error", "wrong", "pass")
"""What became of a completion: ``ok`` extracted and not verified yet; ``no_code``,
``syntax_error``, ``no_transform`` failed extraction; ``duplicate`` repeats an earlier
program's source (not re-run); ``timeout`` / ``error`` failed on some train pair;
``wrong`` ran but missed some train output; ``pass`` fits every train pair."""


def program_status(extraction: str, duplicate_of: str | None = None, verdict: dict[str, Any] | None = None) -> str:
    """The PROGRAM_STATUSES entry of a program, from its ProgramEvent and VerdictEvent fields."""
    if verdict is not None:
        if verdict.get("all_train_pass"):
            return "pass"
        statuses = [p.get("status") for p in verdict.get("train") or []]
        if "timeout" in statuses:
            return "timeout"
        if "error" in statuses or "invalid_output" in statuses:
            return "error"
        return "wrong"
    if extraction == "ok" and duplicate_of:
        return "duplicate"
    return extraction


class _Event(BaseModel):
    v: int = TRACE_VERSION
    t: float = Field(default_factory=time.time, description="Unix time the event was recorded.")


class RunStart(_Event):
    event: Literal["run_start"] = "run_start"
    run_id: str
    config_hash: str
    resumed: bool = False
    task_ids: list[str] | None = Field(None, description="The tasks this run was asked to solve, in order.")
    pid: int | None = Field(None, description="Process id of the writer (with host: tells a live run from a killed one).")
    host: str | None = Field(None, description="Host name of the writer.")


class TextEvent(_Event):
    """A block of prompt text, written once per run and referred to by its digest (version 2)."""

    event: Literal["text"] = "text"
    digest: str = Field(description="text_digest(text).")
    text: str


class TextRef(BaseModel):
    """A reference to the text of a :class:`TextEvent`."""

    ref: str = Field(description="The digest of the text.")


class MessageParts(BaseModel):
    """One chat message as written in a version-2 trace: its content is the parts joined."""

    role: str
    parts: list[Union[str, TextRef]] = Field(description="Literal strings and references to TextEvents, in order.")
    reasoning: str | None = Field(None, description="An assistant turn's reasoning (REPL conversations), kept whole.")
    tool_calls: list[dict[str, Any]] | None = Field(None, description="An assistant turn's function calls (REPL with function calling).")
    tool_call_id: str | None = Field(None, description="A tool message: the call it answers.")


class TaskStart(_Event):
    event: Literal["task_start"] = "task_start"
    task_id: str
    n_train: int
    n_test: int


class PromptEvent(_Event):
    event: Literal["prompt"] = "prompt"
    task_id: str
    request_id: str = Field(description="Unique within the run: '<task>/r<round>/q<index>', or '<task>/x<attempt>/t<turn>' for a REPL turn.")
    round: int
    kind: Literal["first", "refine", "repl"] = Field(description="'repl': one turn of a REPL conversation (search.mode 'repl').")
    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The chat messages (role, content, and in REPL conversations an assistant turn's reasoning and "
        "function calls, a tool message's call id); in a version-2 file rebuilt from message_parts on read.")
    prompt_tokens: int
    sampling: dict[str, Any] = Field(description="SamplingParams of the request, seed included.")
    parent_ids: list[str] = Field(default_factory=list, description="Programs shown as parents (refinement).")
    shrink_steps: list[str] = Field(default_factory=list)
    message_parts: list[MessageParts] | None = Field(
        None, description="Version 2 on disk: the messages as literal parts and TextEvent references.")

    @field_validator("messages", mode="before")
    @classmethod
    def _no_empty_fields(cls, value: Any) -> Any:
        # Message.model_dump() writes reasoning=None for a message without any.
        if isinstance(value, list):
            return [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in value]
        return value


class CompletionEvent(_Event):
    event: Literal["completion"] = "completion"
    task_id: str
    request_id: str
    index: int = Field(description="Position among the n completions of the request.")
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    latency_s: float
    endpoint: str | None = Field(None, description="The server that answered, when model.base_url lists several.")
    reasoning: str | None = Field(None, description="Reasoning the server returned apart from the text (reasoning_content).")
    tool_calls: list[dict[str, Any]] | None = Field(None, description="Function calls the model made: [{id, name, arguments}].")


class ProgramEvent(_Event):
    event: Literal["program"] = "program"
    task_id: str
    program_id: str = Field(description="'<request_id>/c<index>'.")
    round: int
    status: Literal["ok", "no_code", "no_transform", "syntax_error"]
    detail: str = ""
    source: str | None = None
    program_hash: str | None = None
    duplicate_of: str | None = Field(None, description="An earlier program with the same normalised source; not re-run.")
    parent_ids: list[str] = Field(default_factory=list)
    source_span: tuple[int, int] | None = Field(
        None, description="Version 2 on disk: source is text[start:end] of this program's completion.")


class VerdictEvent(_Event):
    event: Literal["verdict"] = "verdict"
    task_id: str
    program_id: str
    all_train_pass: bool
    pairs_passed: int
    train_accuracy: float
    train: list[dict[str, Any]] = Field(description="PairVerdict per train pair.")
    test: list[dict[str, Any]] = Field(description="PairVerdict per test input (status 'unchecked' when answers are hidden).")
    isolation: list[str]
    rechecked: bool = False
    behaviour_duplicate_of: str | None = Field(None, description="An earlier program with identical outputs on every input.")


class VoteEvent(_Event):
    event: Literal["vote"] = "vote"
    task_id: str
    test_index: int
    groups: list[dict[str, Any]] = Field(description="[{output, program_ids, weight, passing}] best first.")


class AttemptsEvent(_Event):
    event: Literal["attempts"] = "attempts"
    task_id: str
    attempts: list[dict[str, Any]] = Field(description="Per test input: {attempt_1, attempt_2} grids (Kaggle form).")
    sources: list[list[str]] = Field(default_factory=list, description="Per test input, what filled each attempt.")


class TaskSkipped(_Event):
    event: Literal["task_skipped"] = "task_skipped"
    task_id: str
    reason: str


class TaskError(_Event):
    event: Literal["task_error"] = "task_error"
    task_id: str
    reason: str


class TaskResult(_Event):
    event: Literal["task_result"] = "task_result"
    task_id: str
    solved_train: bool = Field(description="At least one program passed every train pair.")
    score: float | None = Field(None, description="Pass@2 score when test answers are known.")
    n_programs: int
    n_passing: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    stop_reason: str


class TokenCount(_Event):
    event: Literal["token_count"] = "token_count"
    key: str = Field(description="SHA-256 of the prompt messages (agent.backends.replay.messages_digest).")
    tokens: int = Field(description="What the backend's count_tokens answered.")


class RunEnd(_Event):
    event: Literal["run_end"] = "run_end"
    summary: dict[str, Any]


class ParentPick(BaseModel):
    """One parent chosen for a refinement prompt, and the figures it was chosen by."""

    program_id: str = Field(description="The parent (its behaviour's representative).")
    weight: float = Field(description="What it was chosen by: REX's Thompson draw, or evolution's sigmoid x novelty weight.")
    probability: float | None = Field(None, description="Its chance to be drawn first (evolution); None for REX.")
    fitness: float | None = Field(None, description="Evolution's fitness (correctness and simplicity); REX: train accuracy.")
    times_refined: int = Field(description="Prompts it has been a parent in, this one included.")
    via: Literal["selection", "pooling"] = Field(description="'pooling': added for the train pairs it solves that the others do not.")
    shown: bool = Field(True, description="False when the prompt dropped it to fit the token budget.")


class ParentsEvent(_Event):
    """Which earlier programs a refinement prompt shows, and why (written before its PromptEvent)."""

    event: Literal["parents"] = "parents"
    task_id: str
    request_id: str
    strategy: str = Field(description="The strategy that chose: 'rex' or 'evolve' (also inside 'mix').")
    move: Literal["refine", "crossover"] = Field(description="'crossover': the prompt asks to combine two parents.")
    parents: list[ParentPick] = Field(description="In the order chosen.")
    population: int = Field(description="Programs the parents were chosen from (after island and error filters).")
    island: int | None = Field(None, description="The island chosen from; None with a single island.")
    details: dict[str, float] = Field(default_factory=dict, description="Strategy figures behind the weights (e.g. 'midpoint' of evolution's sigmoid, REX's 'c').")
    focus: list[int] | None = Field(None, description="Train pairs whose failures the prompt details; None = all.")
    reject_pairs: list[int] | None = Field(None, description="A child passing none of these train pairs is rejected as a parent; None = no rejection.")


class ToolCallEvent(_Event):
    """One REPL tool call: code the model ran in the sandbox, and what it was shown back."""

    event: Literal["tool_call"] = "tool_call"
    task_id: str
    conversation: str = Field(description="The REPL attempt: '<task>/x<attempt>'.")
    request_id: str = Field(description="The turn whose completion made the call.")
    call: int = Field(description="Position among the conversation's tool calls, from 0.")
    code: str
    status: Literal["ok", "error", "timeout", "crashed", "refused"] = Field(
        description="'refused': not run (a limit of the attempt was reached).")
    output: str = Field(description="The result as shown to the model (stdout, errors, grid), truncated to its budget.")
    grid: list[list[int]] | None = Field(None, description="The grid the cell's last expression evaluated to.")
    error_type: str | None = None
    cpu_s: float = Field(0.0, description="CPU seconds the call used in the sandbox (earlier cells re-run included).")


class ReplEndEvent(_Event):
    """How a REPL conversation ended."""

    event: Literal["repl_end"] = "repl_end"
    task_id: str
    conversation: str
    outcome: str = Field(description="'submitted', or the limit that ended it: 'max_turns', 'max_tool_calls', "
                         "'max_tokens', 'max_sandbox_s', 'prompt_too_long', 'no_submission' (the model stopped without one).")
    program_id: str | None = Field(None, description="The submitted program.")
    turns: int
    tool_calls: int
    completion_tokens: int
    sandbox_cpu_s: float


class RejectedEvent(_Event):
    """A child fixed none of the failures its prompt showed: it is never a parent (it still votes)."""

    event: Literal["rejected"] = "rejected"
    task_id: str
    program_id: str
    parent_ids: list[str]
    failures: list[int] = Field(description="The train pairs shown as failures, none of which it passes.")


Event = Annotated[
    Union[
        RunStart, TaskStart, PromptEvent, CompletionEvent, ProgramEvent, VerdictEvent,
        VoteEvent, AttemptsEvent, TaskSkipped, TaskError, TaskResult, RunEnd, TokenCount, TextEvent,
        ParentsEvent, RejectedEvent, ToolCallEvent, ReplEndEvent,
    ],
    Field(discriminator="event"),
]
_EVENT = TypeAdapter(Event)


_MESSAGE_EXTRAS = ("reasoning", "tool_calls", "tool_call_id")
"""Message fields beside role and content, kept whole in a version-2 trace."""

MIN_REF_CHARS = 48
"""Prompt blocks shorter than this stay inline: a reference would not save much."""

_BLOCK = re.compile(r"(?<=\n\n)")


def split_message(content: str, known: Callable[[str], bool] | None = None) -> tuple[list[Union[str, TextRef]], list[tuple[str, str]]]:
    """Cut a message into blocks ending at blank lines; long blocks become references.

    Returns the parts (joined, they give ``content`` back exactly) and the new
    ``(digest, text)`` pairs among them. Blank lines separate the examples, test
    inputs and parent programs of a prompt, so a block recurs whole across the
    requests of a task even when the examples are shuffled.
    """
    parts: list[Union[str, TextRef]] = []
    new: list[tuple[str, str]] = []
    for block in _BLOCK.split(content):
        if not block:
            continue
        if len(block) < MIN_REF_CHARS:
            if parts and isinstance(parts[-1], str):
                parts[-1] += block
            else:
                parts.append(block)
            continue
        d = text_digest(block)
        if known is None or not known(d):
            new.append((d, block))
        parts.append(TextRef(ref=d))
    return parts, new


def _split_program_id(program_id: str) -> tuple[str, int] | None:
    request_id, sep, index = program_id.rpartition("/c")
    if not sep or not index.isdigit():
        return None
    return request_id, int(index)


class TraceEncoder:
    """Turns events into the lines of a version-2 trace, storing repeated text once.

    Stateful per file: it remembers the digests already written and the last
    completions (a program event follows its completion at once). A resumed run
    starts a fresh encoder, so a text may be written again once per resume;
    readers keep the first copy.
    """

    def __init__(self, *, keep_completions: int = 4096):
        self._known: set[str] = set()
        self._pending: set[str] = set()
        self._completions: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._keep = keep_completions

    def written(self, ok: bool) -> None:
        """Say whether the lines of the last :meth:`encode` reached the file.

        Texts count as written only then: after a failed write (disk full) the next
        prompt that needs them writes them again instead of referring to nothing.
        """
        if ok:
            self._known |= self._pending
        self._pending = set()

    def encode(self, event: _Event) -> list[str]:
        """The JSON lines (without newline) that record ``event``, TextEvents first."""
        self._pending = set()
        if isinstance(event, PromptEvent) and event.messages and event.message_parts is None:
            lines: list[str] = []
            message_parts = []
            for m in event.messages:
                parts, new = split_message(m.get("content", ""), lambda d: d in self._known or d in self._pending)
                for d, text in new:
                    self._pending.add(d)
                    lines.append(TextEvent(digest=d, text=text, t=event.t).model_dump_json())
                extras = {k: m[k] for k in _MESSAGE_EXTRAS if m.get(k) is not None}
                message_parts.append(MessageParts(role=m.get("role", ""), parts=parts, **extras))
            disk = event.model_copy(update={"message_parts": message_parts})
            # Only the fields some message has go to disk: the usual prompt has none of them.
            unused = {k for k in _MESSAGE_EXTRAS if all(getattr(mp, k) is None for mp in message_parts)}
            lines.append(disk.model_dump_json(exclude={"messages": True, "message_parts": {"__all__": unused}}))
            return lines
        if isinstance(event, CompletionEvent):
            self._completions[(event.request_id, event.index)] = event.text
            while len(self._completions) > self._keep:
                self._completions.popitem(last=False)
            if event.endpoint is None:  # one server: nothing to say, so nothing written
                return [event.model_dump_json(exclude={"endpoint"})]
        elif isinstance(event, ProgramEvent) and event.source and event.source_span is None:
            key = _split_program_id(event.program_id)
            text = self._completions.pop(key, None) if key else None
            start = text.find(event.source) if text is not None else -1
            if start >= 0:
                disk = event.model_copy(update={"source_span": (start, start + len(event.source))})
                return [disk.model_dump_json(exclude={"source"})]
        return [event.model_dump_json()]


class TraceWriter:
    """Appends events to a JSONL file, one ``write`` call per event.

    Opened with ``O_APPEND`` so a resumed run continues the same file. Each event goes
    to the kernel as it is written (no Python buffer), which is what survives
    ``kill -9``; ``fsync=True`` also survives a power cut. A failed write (disk full)
    is cut back to the last whole line before the error is raised, so the file never
    holds half an event written by this process. An event and the TextEvents it
    refers to go out in one write.
    """

    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = Path(path)
        self._fsync = fsync
        self._encoder = TraceEncoder()
        self._repair_torn_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # The file's size after the last whole event, kept here rather than asked of the
        # kernel per event: only this writer appends (the run directory is locked).
        self._size = os.fstat(self._fd).st_size

    def _repair_torn_tail(self) -> None:
        # A line torn by a kill would glue itself to the next event; end it first.
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def write(self, event: _Event) -> None:
        data = "".join(line + "\n" for line in self._encoder.encode(event)).encode("utf-8")
        size = self._size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self._fsync:
                os.fsync(self._fd)
        except OSError:
            self._encoder.written(False)
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                pass  # the reader skips a torn last line anyway
            raise
        self._size = size + len(data)
        self._encoder.written(True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TraceDecoder:
    """Turns the parsed lines of a trace (any version up to TRACE_VERSION) into whole events.

    ``texts`` maps digests to texts; by default the decoder fills it from the
    TextEvents it sees. A reader that jumps around the file (the run index) passes
    a mapping that looks texts up on demand. Completions are remembered until their
    program event has taken its source from them.
    """

    def __init__(self, texts: MutableMapping[str, str] | None = None, *, where: str = "trace"):
        self.texts: MutableMapping[str, str] = texts if texts is not None else {}
        self._completions: dict[tuple[str, int], str] = {}
        self.where = where

    def decode(self, raw: Any, line_no: int | None = None) -> Any:
        """One whole event from a parsed line; None for a line that is not an event.

        Raises TraceVersionError for an event of a newer format version and
        TraceError for a reference to text the file does not hold.
        """
        if not isinstance(raw, dict):
            return None
        v = raw.get("v", 1)
        if isinstance(v, int) and v > TRACE_VERSION:
            at = f"{self.where}, line {line_no}" if line_no is not None else self.where
            raise TraceVersionError(
                f"{at}: trace format version {v} is newer than this arcsynth reads "
                f"(versions 1 to {TRACE_VERSION}); read it with a newer arcsynth"
            )
        kind = raw.get("event")
        if kind == "text":
            d, text = raw.get("digest"), raw.get("text")
            if isinstance(d, str) and isinstance(text, str) and d not in self.texts:
                self.texts[d] = text
        elif kind == "prompt" and raw.get("message_parts") is not None and not raw.get("messages"):
            raw = dict(raw, messages=self._join_messages(raw["message_parts"], line_no), message_parts=None)
        elif kind == "completion":
            rid, idx, text = raw.get("request_id"), raw.get("index"), raw.get("text")
            if isinstance(rid, str) and isinstance(idx, int) and isinstance(text, str):
                self._completions[(rid, idx)] = text
        elif kind == "program":
            key = _split_program_id(str(raw.get("program_id", "")))
            text = self._completions.pop(key, None) if key else None
            span = raw.get("source_span")
            if span is not None and raw.get("source") is None:
                if text is None or not (isinstance(span, list) and len(span) == 2):
                    return None  # its completion is not in the file (torn): the program cannot be rebuilt
                raw = dict(raw, source=text[span[0]:span[1]], source_span=None)
        try:
            return _EVENT.validate_python(raw)
        except ValidationError:
            return None

    def _join_messages(self, message_parts: Any, line_no: int | None) -> list[dict[str, str]]:
        out = []
        for m in message_parts:
            chunks = []
            for part in m.get("parts", []):
                if isinstance(part, str):
                    chunks.append(part)
                    continue
                ref = part.get("ref") if isinstance(part, dict) else None
                try:
                    chunks.append(self.texts[ref])
                except KeyError:
                    at = f"{self.where}, line {line_no}" if line_no is not None else self.where
                    raise TraceError(f"{at}: prompt refers to text {ref} that the trace does not hold") from None
            msg = {"role": m.get("role", ""), "content": "".join(chunks)}
            msg.update({k: m[k] for k in _MESSAGE_EXTRAS if m.get(k) is not None})
            out.append(msg)
        return out


def read_trace(path: Path) -> Iterator[Any]:
    """Yield whole events in order (version 1 and 2 files); skip a torn or unparsable line.

    Events come back as they were emitted: whole messages and sources, no
    TextEvents, no ``message_parts`` or ``source_span``.

    Raises TraceVersionError, naming the file, line and version, for a trace
    written in a newer format version.
    """
    decoder = TraceDecoder(where=str(path))
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            ev = decoder.decode(raw, line_no)
            if ev is not None and not isinstance(ev, TextEvent):  # texts live on inside the messages
                yield ev


def last_attempts(events: Iterable[Any]) -> dict[str, list[Any]]:
    """Each task's events from its LAST attempt, in order.

    A resumed run redoes the tasks that had no result, so the trace can hold several
    attempts of one task, each starting with a :class:`TaskStart`. Readers must use the
    last one: earlier attempts are what a killed process left behind. Events that carry
    no task id (RunStart, RunEnd) are not included.
    """
    by_task: dict[str, list[Any]] = {}
    for ev in events:
        tid = getattr(ev, "task_id", None)
        if tid is None:
            continue
        if isinstance(ev, TaskStart) or tid not in by_task:
            by_task[tid] = []
        by_task[tid].append(ev)
    return by_task
