"""The trace file: events round-trip, a torn last line is tolerated, last attempt wins."""

from __future__ import annotations

import errno
import json
import os

import pytest

from agent.trace import (
    CompletionEvent,
    RunStart,
    TaskResult,
    TaskStart,
    TraceWriter,
    last_attempts,
    read_trace,
)


def result(task_id: str, n: int) -> TaskResult:
    return TaskResult(task_id=task_id, solved_train=False, n_programs=n, n_passing=0, prompt_tokens=1,
                      completion_tokens=2, wall_s=0.1, stop_reason="rounds done")


def test_events_round_trip(tmp_path):
    path = tmp_path / "trace.jsonl"
    events = [RunStart(run_id="r", config_hash="abc"), TaskStart(task_id="t", n_train=2, n_test=1),
              CompletionEvent(task_id="t", request_id="t/r0/q0", index=0, text="x\ny", prompt_tokens=3,
                              completion_tokens=4, finish_reason="stop", latency_s=0.5), result("t", 1)]
    with TraceWriter(path) as w:
        for ev in events:
            w.write(ev)
    assert list(read_trace(path)) == events


def test_torn_last_line_is_skipped_and_repaired_on_append(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as w:
        w.write(TaskStart(task_id="a", n_train=1, n_test=1))
        w.write(result("a", 5))
    whole = path.read_bytes()
    path.write_bytes(whole[:-25])  # a kill in the middle of the second event
    assert [e.event for e in read_trace(path)] == ["task_start"]
    # Appending after the kill must not glue the next event to the torn line.
    with TraceWriter(path) as w:
        w.write(result("a", 6))
    events = list(read_trace(path))
    assert [e.event for e in events] == ["task_start", "task_result"]
    assert events[-1].n_programs == 6


def test_garbage_line_in_the_middle_is_skipped(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as w:
        w.write(TaskStart(task_id="a", n_train=1, n_test=1))
    with open(path, "a") as f:
        f.write('{"event": "no_such_event"}\n\xff not json\n')
    with TraceWriter(path) as w:
        w.write(result("a", 1))
    assert [e.event for e in read_trace(path)] == ["task_start", "task_result"]


def test_readers_take_the_last_attempt_of_a_task(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as w:
        w.write(RunStart(run_id="r", config_hash="h"))
        w.write(TaskStart(task_id="a", n_train=1, n_test=1))
        w.write(TaskStart(task_id="b", n_train=1, n_test=1))
        w.write(result("b", 1))
        # killed here; a resume redoes "a" only
        w.write(RunStart(run_id="r", config_hash="h", resumed=True))
        w.write(TaskStart(task_id="a", n_train=1, n_test=1))
        w.write(result("a", 9))
    attempts = last_attempts(read_trace(path))
    assert set(attempts) == {"a", "b"}
    assert [e.event for e in attempts["a"]] == ["task_start", "task_result"]
    assert attempts["a"][-1].n_programs == 9
    assert attempts["b"][-1].n_programs == 1
    assert [e.resumed for e in read_trace(path) if e.event == "run_start"] == [False, True]


def test_failed_write_leaves_no_partial_line(tmp_path):
    """A write that fails midway is cut back, so only whole events remain."""
    path = tmp_path / "trace.jsonl"
    w = TraceWriter(path)
    w.write(TaskStart(task_id="a", n_train=1, n_test=1))
    real_write = os.write
    calls = {"n": 0}

    def half_then_enospc(fd, data):  # test double for a file system that fills up mid-line
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    os.write = half_then_enospc
    try:
        with pytest.raises(OSError) as info:
            w.write(result("a", 1))
    finally:
        os.write = real_write
    assert info.value.errno == errno.ENOSPC
    w.write(result("a", 2))
    w.close()
    assert path.read_text().count("\n") == 2
    assert [e.event for e in read_trace(path)] == ["task_start", "task_result"]


# -- format version 2: repeated text once ----------------------------------------------

from agent.trace import (  # noqa: E402
    TRACE_VERSION,
    ProgramEvent,
    PromptEvent,
    TraceError,
    TraceVersionError,
    text_digest,
)

SYSTEM = "You are an expert at ARC puzzles. " * 4 + "\n\n"
EXAMPLES = ["## Example %d\nInput (3x3):\n1 2 3\n4 5 6\n7 8 %d\nOutput (3x3):\n3 2 1\n6 5 4\n9 8 7\n\n" % (i, i) for i in range(3)]


def prompt(request_id: str, order: list[int], extra: str = "") -> PromptEvent:
    user = "".join(EXAMPLES[i] for i in order) + extra + "Write the program."
    return PromptEvent(task_id="t", request_id=request_id, round=0, kind="first", prompt_tokens=10, sampling={"n": 1},
                       messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])


def completion(request_id: str, text: str) -> CompletionEvent:
    return CompletionEvent(task_id="t", request_id=request_id, index=0, text=text, prompt_tokens=10,
                           completion_tokens=5, finish_reason="stop", latency_s=0.1)


def test_version_2_stores_shared_prompt_text_once_and_reads_it_back(tmp_path):
    path = tmp_path / "trace.jsonl"
    source = "def transform(grid):\n    return grid"
    text = f"Flip it.\n```python\n{source}\n```\n"
    events = [prompt("t/r0/q0", [0, 1, 2]), prompt("t/r0/q1", [2, 0, 1]), prompt("t/r1/q0", [1, 2, 0], "A new part.\n\n"),
              completion("t/r1/q0", text),
              ProgramEvent(task_id="t", program_id="t/r1/q0/c0", round=1, status="ok", source=source, program_hash="h")]
    with TraceWriter(path) as w:
        for ev in events:
            w.write(ev)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["v"] == TRACE_VERSION == 2 for r in raw)
    texts = [r for r in raw if r["event"] == "text"]
    # Each block once, all before the first prompt: shuffled examples are the same blocks.
    assert sorted(r["digest"] for r in texts) == sorted({text_digest(SYSTEM), *(text_digest(e) for e in EXAMPLES)})
    assert [r["event"] for r in raw[:5]] == ["text"] * 4 + ["prompt"]
    prompts = [line for line in path.read_text().splitlines() if '"event":"prompt"' in line]
    assert all("Example" not in line for line in prompts) and "A new part." in prompts[2]
    program = next(r for r in raw if r["event"] == "program")
    assert "source" not in program and text[slice(*program["source_span"])] == source
    assert list(read_trace(path)) == events


def test_version_1_trace_still_reads(tmp_path):
    path = tmp_path / "trace.jsonl"
    v1 = [
        {"v": 1, "t": 1.0, "event": "prompt", "task_id": "t", "request_id": "t/r0/q0", "round": 0, "kind": "first",
         "messages": [{"role": "user", "content": "Solve it."}], "prompt_tokens": 3, "sampling": {"n": 1},
         "parent_ids": [], "shrink_steps": []},
        {"v": 1, "t": 1.0, "event": "completion", "task_id": "t", "request_id": "t/r0/q0", "index": 0, "text": "```python\nx\n```",
         "prompt_tokens": 3, "completion_tokens": 2, "finish_reason": "stop", "latency_s": 0.1},
        {"v": 1, "t": 1.0, "event": "program", "task_id": "t", "program_id": "t/r0/q0/c0", "round": 0, "status": "ok",
         "detail": "", "source": "x", "program_hash": "h", "duplicate_of": None, "parent_ids": []},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in v1))
    events = list(read_trace(path))
    assert events[0].messages == [{"role": "user", "content": "Solve it."}] and events[2].source == "x"
    assert [e.v for e in events] == [1, 1, 1]


def test_newer_version_is_refused_naming_file_line_and_version(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as w:
        w.write(TaskStart(task_id="a", n_train=1, n_test=1))
    with open(path, "a") as f:
        f.write(json.dumps({"v": TRACE_VERSION + 1, "t": 0, "event": "task_start", "task_id": "a"}) + "\n")
    with pytest.raises(TraceVersionError, match=rf"trace.jsonl, line 2: trace format version {TRACE_VERSION + 1} is newer"):
        list(read_trace(path))


def test_reference_to_missing_text_names_the_line(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as w:
        w.write(prompt("t/r0/q0", [0]))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if '"event":"text"' not in line) + "\n")
    with pytest.raises(TraceError, match="line 1: prompt refers to text"):
        list(read_trace(path))


def test_texts_of_a_failed_write_are_written_again(tmp_path):
    """A disk-full error cuts a prompt's texts back out; the next prompt must not refer to them."""
    path = tmp_path / "trace.jsonl"
    w = TraceWriter(path)
    real_write = os.write

    def enospc(fd, data):  # test double for a full file system
        raise OSError(errno.ENOSPC, "No space left on device")

    os.write = enospc
    try:
        with pytest.raises(OSError):
            w.write(prompt("t/r0/q0", [0, 1, 2]))
    finally:
        os.write = real_write
    w.write(prompt("t/r0/q1", [2, 1, 0]))
    w.close()
    assert [e.request_id for e in read_trace(path)] == ["t/r0/q1"]
    assert sum('"event":"text"' in line for line in path.read_text().splitlines()) == 4
