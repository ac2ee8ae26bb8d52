"""Resume: a run killed with SIGKILL and resumed ends with the results of an
uninterrupted run, nothing redone that was finished, nothing counted twice.

Both runs replay the same recorded completions (a scripted-model run, see
recorded_run.py), so their results must be equal to the last bit; prompts, the
sandbox, verdicts and voting are real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.config import config_hash, config_to_toml, load_config
from agent.rundir import RunDir, compare_runs
from agent.trace import last_attempts, read_trace
from arcsynth.cli.replay import replay_config
from recorded_run import SMALL_TASKS, make_scripted_run

ROOT = Path(__file__).resolve().parents[2]


def arcsynth(*args: str) -> list[str]:
    return [sys.executable, "-m", "arcsynth", *map(str, args)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return make_scripted_run(tmp_path_factory.mktemp("recorded") / "run")


@pytest.fixture(scope="module")
def replay_toml(recorded, tmp_path_factory) -> Path:
    # One task at a time so a kill lands between two tasks' results.
    cfg = replay_config(recorded).model_copy(update={"concurrency": 1})
    path = tmp_path_factory.mktemp("cfg") / "replay.toml"
    path.write_text(config_to_toml(cfg))
    return path


@pytest.fixture(scope="module")
def uninterrupted(replay_toml, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    r = subprocess.run(arcsynth("solve", replay_toml, "--out", out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    return out


def kill_after_first_result(cmd: list[str], out: Path) -> int:
    """Start ``cmd``, SIGKILL it as soon as one task result exists; the results written by then."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            results = out / "results"
            if results.is_dir() and any(p.suffix == ".json" for p in results.iterdir()):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return len(list((out / "results").glob("*.json")))


def test_kill9_then_resume_equals_an_uninterrupted_run(replay_toml, uninterrupted, recorded, tmp_path):
    out = tmp_path / "killed"
    n_before = kill_after_first_result(arcsynth("solve", replay_toml, "--out", out), out)
    assert 1 <= n_before < len(SMALL_TASKS)
    done_before = {p.stem: p.read_bytes() for p in (out / "results").glob("*.json")}
    assert not (out / "summary.json").exists()

    r = subprocess.run(arcsynth("solve", "--resume", out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"{n_before} already done" in r.stdout

    # Finished tasks were not redone: their result files are untouched and each has one attempt.
    for tid, data in done_before.items():
        assert (out / "results" / f"{tid}.json").read_bytes() == data
    events = list(read_trace(out / "trace.jsonl"))
    starts = Counter(e.task_id for e in events if e.event == "task_start")
    assert all(starts[tid] == 1 for tid in done_before)
    assert [e.resumed for e in events if e.event == "run_start"] == [False, True]
    assert set(last_attempts(events)) == set(SMALL_TASKS)

    # Nothing duplicated in what is reported.
    sub = json.loads((out / "submission.json").read_text())
    assert sorted(sub) == sorted(SMALL_TASKS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks_done"] == len(SMALL_TASKS) and summary["pass2"]["n_tasks"] == len(SMALL_TASKS)

    assert compare_runs(uninterrupted, out) == []
    assert compare_runs(recorded, out) == []

    # A resumed run replays like any other: the replay serves each task's last attempt.
    again = tmp_path / "replayed"
    r = subprocess.run(arcsynth("replay", out, "--out", again), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    assert compare_runs(out, again) == []


def test_resume_refuses_a_different_config_and_accepts_an_equal_one(replay_toml, uninterrupted, tmp_path):
    r = subprocess.run(arcsynth("solve", "--resume", uninterrupted, "sampling.temperature=0.1"), cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "differs from the run's own config.toml" in r.stderr
    # concurrency does not change results, so it is not part of the config hash: accepted.
    r = subprocess.run(arcsynth("solve", "--resume", uninterrupted, "concurrency=3"), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{len(SMALL_TASKS)} already done" in r.stdout
    # An override holding a URL is an override, not a CONFIG path (its '//' intact): the
    # server's address is not part of the hash either.
    r = subprocess.run(arcsynth("solve", "--resume", uninterrupted, 'model.base_url="http://127.0.0.1:9/v1"'), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{len(SMALL_TASKS)} already done" in r.stdout
    # A resume of a finished run redoes nothing.
    events = list(read_trace(uninterrupted / "trace.jsonl"))
    assert Counter(e.event for e in events)["task_start"] == len(SMALL_TASKS)


def test_resume_needs_a_run_directory(tmp_path):
    r = subprocess.run(arcsynth("solve", "--resume", tmp_path / "nope"), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a run directory" in r.stderr


def test_out_into_a_finished_run_is_refused(replay_toml, uninterrupted):
    before = (uninterrupted / "summary.json").read_bytes()
    r = subprocess.run(arcsynth("solve", replay_toml, "--out", uninterrupted), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not empty" in r.stderr and "--resume" in r.stderr
    assert (uninterrupted / "summary.json").read_bytes() == before
