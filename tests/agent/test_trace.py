"""The trace file: events round-trip, a torn last line is tolerated, last attempt wins."""

from __future__ import annotations

import errno
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
