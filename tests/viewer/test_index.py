"""The run index: what it reports equals what the trace and results say; it is reused,
updated incrementally, rebuilt when stale, and refuses bad input with a clear message."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

from agent.trace import ProgramEvent, PromptEvent, TaskResult, TaskStart, TRACE_VERSION, read_trace
from viewer.index import INDEX_NAME, PROGRAM_STATUSES, RunIndex, RunIndexError


def listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_header_and_rows_agree_with_results_and_summary(recorded_run):
    results = {p.stem: json.loads(p.read_text()) for p in (recorded_run / "results").glob("*.json")}
    summary = json.loads((recorded_run / "summary.json").read_text())
    with RunIndex.open(recorded_run) as ix:
        head = ix.header()
        rows = {r.task_id: r for r in ix.tasks()}
    assert head.status == "finished" and head.dataset == "arc1:eval" and head.name == "scripted"
    assert head.tasks == len(results) == len(rows) and head.tasks_done == len(results)
    assert head.programs == summary["n_programs"] == sum(r["n_programs"] for r in results.values())
    assert head.status_counts == summary["program_status_counts"]
    assert sum(head.status_counts.values()) == head.programs
    assert head.score == pytest.approx(sum(r["score"] for r in results.values()))
    assert head.trace_version == TRACE_VERSION and head.config_hash == summary["config_hash"]
    for tid, res in results.items():
        row = rows[tid]
        assert (row.programs, row.passing, row.score) == (res["n_programs"], res["n_passing"], res["score"])
        assert row.status_counts == {k: v for k, v in res["program_status_counts"].items() if v or k in row.status_counts}
        assert row.status in ("solved", "train-solved", "unsolved")
        assert row.tokens == res["prompt_tokens"] + res["completion_tokens"]


def test_task_detail_and_candidate_come_from_the_trace(recorded_run):
    events = list(read_trace(recorded_run / "trace.jsonl"))
    with RunIndex.open(recorded_run) as ix:
        tid = ix.tasks()[0].task_id
        detail = ix.task(tid)
        programs = [e for e in events if isinstance(e, ProgramEvent) and e.task_id == tid]
        assert [c.program_id for c in detail.candidates] == [p.program_id for p in programs]
        assert detail.grids is not None and len(detail.grids.train_inputs) == next(
            e.n_train for e in events if isinstance(e, TaskStart) and e.task_id == tid)
        assert len(detail.attempts) == len(detail.grids.test_inputs)
        assert all(a.correct_1 is not None for a in detail.attempts)  # arc1:eval answers are known
        # Lineage: every refinement hangs under the parents its prompt showed.
        tree = detail.children()
        for c in detail.candidates:
            for parent in c.parent_ids or [None]:
                assert c.program_id in tree[parent]
        ran = [c for c in detail.candidates if c.status in ("wrong", "pass", "error", "timeout")]
        assert ran
        for c in ran:
            cand = ix.candidate(tid, c.program_id)
            prog = next(p for p in programs if p.program_id == c.program_id)
            assert cand.source == prog.source and cand.source in cand.completion
            prompt = next(e for e in events if isinstance(e, PromptEvent) and e.request_id == c.request_id)
            assert [(m.role, m.content) for m in cand.prompt] == [(m["role"], m["content"]) for m in prompt.messages]
            train = [p for p in cand.pairs if p.kind == "train"]
            assert len(train) == len(detail.grids.train_inputs) and train[0].expected == detail.grids.train_outputs[0]
            for p in train:
                if p.produced is not None and p.diff is not None:
                    wrong = sum(map(sum, p.diff))
                    assert (wrong == 0) == (p.status == "pass")
        with pytest.raises(RunIndexError, match="no program"):
            ix.candidate(tid, "nope")
        with pytest.raises(RunIndexError, match="no task"):
            ix.task("ffffffff")


def test_search_finds_programs_completions_and_prompts(recorded_run):
    with RunIndex.open(recorded_run) as ix:
        hits = ix.search("ZIP(*grid)")
        assert hits and all("zip(*grid)" in h.snippet for h in hits)
        for h in hits:
            assert "zip(*grid)" in ix.candidate(h.task_id, h.program_id).completion
        prompt_hits = ix.search("## Example 1")
        assert {h.where for h in prompt_hits} == {"prompt"} and len({h.task_id for h in prompt_hits}) == len(ix.tasks())
        assert ix.search("no such text anywhere") == [] and ix.search("...") == []


def test_index_is_reused_then_updated_incrementally(recorded_run):
    trace = recorded_run / "trace.jsonl"
    whole = trace.read_bytes()
    lines = whole.splitlines(keepends=True)
    cut = next(i for i, l in enumerate(lines) if b'"task_result"' in l) + 1
    trace.write_bytes(b"".join(lines[:cut]) + lines[cut][:20])  # the next line is being written
    with RunIndex.open(recorded_run) as ix:
        first = [r for r in ix.tasks() if r.status != "pending"]
        assert ix.read_at_open == len(b"".join(lines[:cut]))
        assert sum(r.status in ("solved", "train-solved", "unsolved") for r in first) == 1
        assert ix.refresh() == 0
        with open(trace, "wb") as f:
            f.write(whole)
        assert ix.refresh() == len(whole) - len(b"".join(lines[:cut]))
        live = ix.tasks()
    with RunIndex.open(recorded_run) as ix:
        assert ix.read_at_open == 0
        assert ix.tasks() == live
    with RunIndex.open(recorded_run, rebuild=True) as ix:
        assert ix.read_at_open == len(whole) and ix.tasks() == live


def test_stale_or_old_schema_index_is_rebuilt(recorded_run):
    with RunIndex.open(recorded_run) as ix:
        full = ix.tasks()
    db = sqlite3.connect(recorded_run / INDEX_NAME)
    db.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    db.commit()
    db.close()
    with RunIndex.open(recorded_run) as ix:
        assert ix.read_at_open > 0 and ix.tasks() == full
    # A trace replaced by a shorter one (another run copied over it): start over.
    trace = recorded_run / "trace.jsonl"
    lines = trace.read_bytes().splitlines(keepends=True)
    trace.write_bytes(b"".join(lines[:3]))
    with RunIndex.open(recorded_run) as ix:
        assert ix.read_at_open == len(b"".join(lines[:3]))
        assert ix.header().programs == 0
    (recorded_run / INDEX_NAME).write_bytes(b"not a database at all" * 100)
    with RunIndex.open(recorded_run) as ix:
        assert ix.read_at_open == len(b"".join(lines[:3]))


def test_version_one_trace_reads_the_same(recorded_run):
    with RunIndex.open(recorded_run) as ix:
        rows = ix.tasks()
        tid = rows[0].task_id
        cand_id = next(c.program_id for c in ix.task(tid).candidates if c.status == "wrong")
        cand = ix.candidate(tid, cand_id)
    # Rewrite the trace as version 1 wrote it: whole messages and sources, no text events.
    v1 = []
    for ev in read_trace(recorded_run / "trace.jsonl"):
        d = json.loads(ev.model_dump_json(exclude={"message_parts", "source_span", "task_ids", "pid", "host"}))
        d["v"] = 1
        v1.append(json.dumps(d))
    (recorded_run / "trace.jsonl").write_text("\n".join(v1) + "\n")
    with RunIndex.open(recorded_run) as ix:
        assert ix.header().trace_version == 1
        assert ix.tasks() == rows
        old = ix.candidate(tid, cand_id)
        assert (old.source, old.completion, old.prompt, old.pairs) == (cand.source, cand.completion, cand.prompt, cand.pairs)
        assert ix.search("zip(*grid)")


def test_newer_trace_version_is_refused_naming_it(recorded_run):
    with open(recorded_run / "trace.jsonl", "a") as f:
        f.write(json.dumps({"v": TRACE_VERSION + 1, "t": 0, "event": "task_start", "task_id": "x"}) + "\n")
    with pytest.raises(RunIndexError, match=f"version {TRACE_VERSION + 1} is newer"):
        RunIndex.open(recorded_run)


def test_missing_and_foreign_directories(tmp_path):
    with pytest.raises(RunIndexError, match="no such directory"):
        RunIndex.open(tmp_path / "nope")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(RunIndexError, match="not a run directory"):
        RunIndex.open(tmp_path / "photos")
    assert listing(tmp_path / "photos") == ["cat.jpg"]
    with pytest.raises(RunIndexError, match="is a file"):
        RunIndex.open(tmp_path / "photos" / "cat.jpg")


def _cut_mid_task(run, *, pid: int | None):
    """The trace of a run killed in the middle of its second task (its writer pid given)."""
    trace = run / "trace.jsonl"
    lines = trace.read_text().splitlines()
    starts = [i for i, l in enumerate(lines) if '"task_start"' in l]
    keep = lines[: starts[1] + 4]
    first = json.loads(keep[0])
    first["pid"], first["host"] = pid, os.uname().nodename
    keep[0] = json.dumps(first)
    trace.write_text("\n".join(keep) + "\n")
    return json.loads(lines[starts[1]])["task_id"]


def test_killed_mid_task_and_running_runs(recorded_run):
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    tid = _cut_mid_task(recorded_run, pid=dead)
    before = listing(recorded_run)
    with RunIndex.open(recorded_run) as ix:
        assert ix.header().status == "killed"
        assert ix.task_row(tid).status == "killed"
        assert {r.status for r in ix.tasks()} >= {"killed", "pending"}
        ix.task(tid)  # a task cut short still opens
    assert listing(recorded_run) == sorted(before + [INDEX_NAME])
    _cut_mid_task(recorded_run, pid=os.getpid())  # this process stands for a live writer
    with RunIndex.open(recorded_run) as ix:
        assert ix.header().status == "running" and ix.task_row(tid).status == "running"


def test_statuses_cover_every_program(recorded_run):
    with RunIndex.open(recorded_run) as ix:
        for row in ix.tasks():
            assert set(row.status_counts) <= set(PROGRAM_STATUSES)
            detail = ix.task(row.task_id)
            got = {}
            for c in detail.candidates:
                got[c.status] = got.get(c.status, 0) + 1
            assert got == {k: v for k, v in row.status_counts.items() if v}


def test_two_readers_of_a_growing_run_share_one_index(recorded_run):
    trace = recorded_run / "trace.jsonl"
    whole = trace.read_bytes()
    lines = whole.splitlines(keepends=True)
    third = len(lines) // 3
    trace.write_bytes(b"".join(lines[:third]))
    a, b = RunIndex.open(recorded_run), RunIndex.open(recorded_run)
    try:
        assert b.read_at_open == 0  # a built it, b reused it
        with open(trace, "ab") as f:
            f.write(b"".join(lines[third : 2 * third]))
        assert a.refresh() > 0 and b.refresh() == 0  # b sees a's work instead of indexing again
        with open(trace, "ab") as f:
            f.write(b"".join(lines[2 * third :]))
        assert b.refresh() > 0 and a.refresh() == 0
        assert a.tasks() == b.tasks()
        shared = a.tasks()
        n = sqlite3.connect(recorded_run / INDEX_NAME).execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        a.close()
        b.close()
    with RunIndex.open(recorded_run, rebuild=True) as fresh:
        assert fresh.tasks() == shared
        assert sqlite3.connect(recorded_run / INDEX_NAME).execute("SELECT COUNT(*) FROM events").fetchone()[0] == n


def test_a_run_that_has_not_written_its_trace_yet(recorded_run, tmp_path):
    young = tmp_path / "young"
    young.mkdir()
    shutil.copy(recorded_run / "config.toml", young)
    with RunIndex.open(young) as ix:
        assert ix.header().status == "not started" and ix.tasks() == []
        shutil.copy(recorded_run / "trace.jsonl", young)  # the solve starts writing
        assert ix.refresh() > 0 and ix.header().programs > 0
    assert listing(young) == sorted(["config.toml", "trace.jsonl", INDEX_NAME])
