"""Run directories: layout, refusal to overwrite, atomic writes, disk full and read-only."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.rundir import RecordError, Recorder, RunDir, RunDirError, atomic_write_text, default_run_dir
from agent.trace import TaskStart, read_trace


@contextmanager
def small_fs(path: Path, size: str = "64k", readonly: bool = False):
    """A real tmpfs of ``size`` at ``path`` (root only); skips the test where mounting is impossible."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    opts = f"size={size}" + (",ro" if readonly else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def unwritable_dir(path: Path):
    """A directory this process cannot write: a read-only tmpfs as root, chmod 555 otherwise."""
    if os.geteuid() == 0:
        with small_fs(path, readonly=True):
            yield path
    else:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


def test_default_run_dir_is_named_and_timestamped(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first = default_run_dir(tmp_path, "quick", now)
    assert first == tmp_path / "quick-20260102-030405"
    first.mkdir()
    assert default_run_dir(tmp_path, "quick", now) == tmp_path / "quick-20260102-030405-2"


def test_create_refuses_a_non_empty_directory(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    RunDir.create(target)  # empty: fine
    (target / "config.toml").write_text("seed = 1\n")
    with pytest.raises(RunDirError, match="not empty.*--resume"):
        RunDir.create(target)
    assert (target / "config.toml").read_text() == "seed = 1\n"


def test_open_existing_needs_a_config(tmp_path):
    with pytest.raises(RunDirError, match="no such directory"):
        RunDir.open_existing(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(RunDirError, match="config.toml"):
        RunDir.open_existing(tmp_path / "x")


def test_results_are_written_atomically_and_listed(tmp_path):
    rd = RunDir.create(tmp_path / "run")
    rd.write_result("aaa", {"task_id": "aaa", "n_programs": 1})
    rd.write_result("aaa", {"task_id": "aaa", "n_programs": 2})
    rd.write_result("bbb", {"task_id": "bbb", "n_programs": 3})
    assert rd.done_task_ids() == {"aaa", "bbb"}
    assert rd.read_results()["aaa"]["n_programs"] == 2
    assert sorted(p.name for p in rd.results_dir.iterdir()) == ["aaa.json", "bbb.json"]  # no temp files left
    with pytest.raises(RunDirError, match="file name"):
        rd.write_result("../escape", {})


def test_a_task_that_ended_in_an_error_is_redone_on_resume(tmp_path):
    rd = RunDir.create(tmp_path / "run")
    rd.write_result("ok", {"task_id": "ok", "status": "done"})
    rd.write_result("skip", {"task_id": "skip", "status": "skipped"})
    rd.write_result("down", {"task_id": "down", "status": "error", "stop_reason": "server unreachable"})
    assert rd.done_task_ids() == {"ok", "skip"}
    # Its result stays readable until the retry overwrites it.
    assert rd.read_results()["down"]["stop_reason"] == "server unreachable"


def test_submission_is_built_from_results_once_per_task(tmp_path):
    rd = RunDir.create(tmp_path / "run")
    grid = [[1, 2], [3, 4]]
    rd.write_result("t1", {"task_id": "t1", "attempts": [{"attempt_1": grid, "attempt_2": grid}]})
    rd.write_result("t1", {"task_id": "t1", "attempts": [{"attempt_1": [[5]], "attempt_2": grid}]})  # redone
    rd.write_result("t2", {"task_id": "t2", "attempts": [{"attempt_1": [[0]], "attempt_2": [[0]]}]})
    rd.write_submission(["t2", "t1"])
    sub = json.loads((rd.path / "submission.json").read_text())
    assert list(sub) == ["t2", "t1"]
    assert sub["t1"] == [{"attempt_1": [[5]], "attempt_2": grid}]


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    with small_fs(tmp_path / "fs", "64k") as fs:
        target = fs / "summary.json"
        atomic_write_text(target, "old\n")
        with pytest.raises(RecordError) as info:
            atomic_write_text(target, "x" * 200_000)
        assert str(target) in str(info.value) and "no space left" in str(info.value)
        assert target.read_text() == "old\n"
        assert [p.name for p in fs.iterdir()] == ["summary.json"]


def test_disk_full_during_the_trace_stops_cleanly_and_keeps_what_was_written(tmp_path):
    with small_fs(tmp_path / "fs", "64k") as fs:
        rd = RunDir.create(fs / "run")
        rec = Recorder(rd)
        written = 0
        with pytest.raises(RecordError) as info:
            for i in range(10_000):
                rec.emit(TaskStart(task_id=f"task{i:05d}", n_train=3, n_test=1))
                written += 1
        message = str(info.value)
        assert "no space left" in message and str(rd.trace_path) in message
        # Sticky: nothing more is recorded once the record has failed.
        with pytest.raises(RecordError):
            rec.emit(TaskStart(task_id="later", n_train=1, n_test=1))
        with pytest.raises(RecordError):
            rec.task_done("later", {"task_id": "later"})
        rec.close()
        events = list(read_trace(rd.trace_path))
        assert len(events) == written
        assert events[-1].task_id == f"task{written - 1:05d}"
        assert rd.trace_path.read_bytes().endswith(b"\n")


def test_unwritable_parent_gives_a_clear_error(tmp_path):
    with unwritable_dir(tmp_path / "ro") as ro:
        with pytest.raises(RunDirError) as info:
            RunDir.create(ro / "run")
        assert str(ro / "run") in str(info.value)
        assert "not writable" in str(info.value)


def test_passing_programs_are_written_and_statuses_counted(tmp_path):
    from agent.rundir import program_file_name
    from agent.trace import ProgramEvent, TaskStart, VerdictEvent

    rd = RunDir.create(tmp_path / "run")
    passing = {"status": "pass", "cell_accuracy": 1.0}
    with Recorder(rd) as rec:
        rec.emit(TaskStart(task_id="t1", n_train=2, n_test=1))
        for i, (status, dup) in enumerate([("ok", None), ("ok", None), ("ok", "t1/r0/q0/c0"), ("no_code", None), ("ok", None)]):
            rec.emit(ProgramEvent(task_id="t1", program_id=f"t1/r0/q0/c{i}", round=0, status=status,
                                  source=None if status == "no_code" else f"def transform(g):\n    return g  # {i}",
                                  duplicate_of=dup))
        verdict = dict(task_id="t1", pairs_passed=2, test=[], isolation=["process"])
        rec.emit(VerdictEvent(program_id="t1/r0/q0/c0", all_train_pass=True, train_accuracy=1.0, train=[passing] * 2, **verdict))
        rec.emit(VerdictEvent(program_id="t1/r0/q0/c1", all_train_pass=False, train_accuracy=0.5,
                              train=[passing, {"status": "timeout"}], **{**verdict, "pairs_passed": 1}))
        rec.task_done("t1", {"task_id": "t1", "n_programs": 5})
    files = sorted((rd.path / "programs" / "t1").iterdir())
    assert [f.name for f in files] == [program_file_name("t1/r0/q0/c0")] == ["r0-q0-c0.py"]
    text = files[0].read_text()
    assert text.startswith("# task t1, program t1/r0/q0/c0: passes all 2 train pairs\n")
    assert text.endswith("def transform(g):\n    return g  # 0\n")
    counts = rd.read_results()["t1"]["program_status_counts"]
    assert {k: v for k, v in counts.items() if v} == {"pass": 1, "timeout": 1, "duplicate": 1, "no_code": 1, "ok": 1}
    assert program_file_name("a/r1/q2/c3") == "r1-q2-c3.py" and program_file_name("a/../../etc") == "etc.py"
