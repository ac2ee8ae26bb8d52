"""`arcsynth show`, `arcsynth runs`, `arcsynth report` on a real recorded run (scripted model,
real sandbox): what they print comes from the run, bad input gets one clear line, and
nothing but the index is written into the run directory."""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))  # recorded_run, scripted_backend

from recorded_run import SMALL_TASKS, make_scripted_run  # noqa: E402


@pytest.fixture(scope="module")
def run_master(tmp_path_factory) -> Path:
    return make_scripted_run(tmp_path_factory.mktemp("show") / "run", SMALL_TASKS[:3])


@pytest.fixture
def run(run_master, tmp_path) -> Path:
    dst = tmp_path / "runs" / "scripted-1"
    shutil.copytree(run_master, dst, ignore=shutil.ignore_patterns("index.sqlite*"))
    return dst


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_show_run_plain_lists_header_and_every_task(cli_app, runner, run):
    before = listing(run)
    r = runner.invoke(cli_app, ["show", str(run)])
    assert r.exit_code == 0, r.output
    summary = json.loads((run / "summary.json").read_text())
    assert "\x1b[" not in r.stdout  # plain text in a pipe
    assert re.search(r"^status:\s+finished$", r.stdout, re.M)
    assert f"programs:     {summary['n_programs']}:" in r.stdout
    for tid in SMALL_TASKS[:3]:
        assert re.search(rf"^{tid}\s+(unsolved|train-solved|solved)\s", r.stdout, re.M)
    assert listing(run) == sorted(before + ["index.sqlite"])


def test_show_task_and_program(cli_app, runner, run):
    tid = SMALL_TASKS[0]
    r = runner.invoke(cli_app, ["show", str(run), tid])
    assert r.exit_code == 0, r.output
    assert f"task {tid}:" in r.stdout and "candidates" in r.stdout and "attempt 1" in r.stdout
    data = json.loads(runner.invoke(cli_app, ["show", str(run), tid, "--json"]).stdout)
    cand = next(c for c in data["candidates"] if c["status"] in ("wrong", "pass"))
    short = cand["program_id"].split("/", 1)[1]
    r = runner.invoke(cli_app, ["show", str(run), tid, "--program", short])
    assert r.exit_code == 0, r.output
    full = json.loads(runner.invoke(cli_app, ["show", str(run), tid, "--program", short, "--json"]).stdout)
    assert full["source"] in r.stdout and "--- completion" in r.stdout and "expected" in r.stdout
    # Grids are drawn compactly: one line per grid row, pairs side by side.
    train0 = full["pairs"][0]
    first_row = "".join(map(str, train0["input"][0]))
    assert any(line.startswith(first_row + " ") for line in r.stdout.splitlines())


def test_show_json_of_the_run(cli_app, runner, run):
    r = runner.invoke(cli_app, ["show", str(run), "--json"])
    data = json.loads(r.stdout)
    assert data["header"]["status"] == "finished" and len(data["tasks"]) == 3
    assert set(data["header"]["status_counts"]) >= {"ok", "no_code", "syntax_error", "duplicate", "pass", "wrong"}


def test_show_bad_input_gets_one_clear_line(cli_app, runner, run, tmp_path):
    cases = [
        ([str(tmp_path / "missing")], "no such directory"),
        ([str(tmp_path)], "not a run directory"),
        ([str(run), "nonexistent"], "no task 'nonexistent'"),
        ([str(run), SMALL_TASKS[0], "--program", "r9/q9/c9"], "has no program"),
        ([str(run), "--program", "r0/q0/c0"], "--program needs a TASK_ID"),
    ]
    for args, message in cases:
        r = runner.invoke(cli_app, ["show", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output


def test_show_refuses_a_newer_trace_and_a_torn_line_is_fine(cli_app, runner, run):
    with open(run / "trace.jsonl", "a") as f:
        f.write('{"v":2,"t":1,"event":"task_st')  # a writer killed mid-line
    r = runner.invoke(cli_app, ["show", str(run)])
    assert r.exit_code == 0, r.output
    with open(run / "trace.jsonl", "a") as f:
        f.write('\n{"v":99,"t":1,"event":"task_start","task_id":"x","n_train":1,"n_test":1}\n')
    r = runner.invoke(cli_app, ["show", str(run)])
    assert r.exit_code == 2 and "trace format version 99 is newer" in r.output


def test_runs_lists_run_directories(cli_app, runner, run):
    (run.parent / "notes").mkdir()
    r = runner.invoke(cli_app, ["runs", str(run.parent)])
    assert r.exit_code == 0, r.output
    line = next(line for line in r.stdout.splitlines() if line.startswith("scripted-1"))
    n = json.loads((run / "summary.json").read_text())["n_programs"]
    assert re.match(rf"scripted-1\s+finished\s+arc1:eval\s+\S+\s+\S+/3\s+3/3\s+{n}\s+\S+ ago", line), line
    assert "notes" not in r.stdout
    data = json.loads(runner.invoke(cli_app, ["runs", str(run.parent), "--json"]).stdout)
    assert [d["run"] for d in data] == ["scripted-1"]
    r = runner.invoke(cli_app, ["runs", str(run.parent / "nope")])
    assert r.exit_code == 2 and "no such directory" in r.output


def test_report_is_one_self_contained_html_file(cli_app, runner, run, tmp_path):
    out = tmp_path / "report.html"
    before = listing(run)
    r = runner.invoke(cli_app, ["report", str(run), "--html", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)=|https?://|<script|@import", page)  # nothing fetched from anywhere
    for tid in SMALL_TASKS[:3]:
        assert f">{tid}<" in page
    assert ".c2{background:#FF4136}" in page and 'class="c' in page
    data = json.loads(runner.invoke(cli_app, ["show", str(run), SMALL_TASKS[0], "--json"]).stdout)
    best = [c for c in data["candidates"] if c["train_accuracy"] is not None]
    if best:
        top = max(best, key=lambda c: c["train_accuracy"])
        src = json.loads(runner.invoke(cli_app, ["show", str(run), SMALL_TASKS[0], "-p", top["program_id"], "--json"]).stdout)["source"]
        assert html.escape(src) in page
    assert listing(run) == sorted(before + ["index.sqlite"])
    r = runner.invoke(cli_app, ["report", str(run), "--html", str(tmp_path / "no" / "r.html")])
    assert r.exit_code == 2 and "not a directory" in r.output


def test_show_draws_with_rich_on_a_terminal(cli_app, runner, run, monkeypatch):
    # Truecolor as in test_cli_tasks: rich keeps a Style's escape codes for the colour system it
    # first rendered with, so a test on another system would change what later tests see.
    for k, v in {"FORCE_COLOR": "1", "COLORTERM": "truecolor", "TERM": "xterm-256color", "COLUMNS": "160"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("NO_COLOR", raising=False)
    tid = SMALL_TASKS[0]
    data = json.loads(runner.invoke(cli_app, ["show", str(run), tid, "--json"]).stdout)
    ran = next(c["program_id"] for c in data["candidates"] if c["status"] in ("wrong", "pass"))
    for args in ([str(run)], [str(run), tid], [str(run), tid, "-p", ran]):
        r = runner.invoke(cli_app, ["show", *args, "--color"])
        assert r.exit_code == 0, (args, r.output)
        assert "\x1b[" in r.stdout and tid in r.stdout


def test_show_a_run_killed_mid_task(cli_app, runner, run):
    lines = (run / "trace.jsonl").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if '"task_start"' in line]
    first = json.loads(lines[0])
    first["pid"] = 2**22 + 12345  # beyond pid_max: no such process, the writer is gone
    lines[0] = json.dumps(first)
    (run / "trace.jsonl").write_text("\n".join(lines[: starts[1] + 3]) + "\n")
    victim = json.loads(lines[starts[1]])["task_id"]
    r = runner.invoke(cli_app, ["show", str(run)])
    assert r.exit_code == 0, r.output
    assert re.search(r"^status:\s+killed$", r.stdout, re.M)
    assert re.search(rf"^{victim}\s+killed\s", r.stdout, re.M)
    assert re.search(rf"^{SMALL_TASKS[2]}\s+pending\s", r.stdout, re.M)
    r = runner.invoke(cli_app, ["show", str(run), victim])
    assert r.exit_code == 0 and f"task {victim}: killed" in r.stdout


def test_show_filters_tasks_by_status_and_limits_candidates(cli_app, runner, run):
    data = json.loads(runner.invoke(cli_app, ["show", str(run), "--json"]).stdout)
    status = data["tasks"][0]["status"]
    same = [t["task_id"] for t in data["tasks"] if t["status"] == status]
    r = runner.invoke(cli_app, ["show", str(run), "--status", status, "--json"])
    assert [t["task_id"] for t in json.loads(r.stdout)["tasks"]] == same
    r = runner.invoke(cli_app, ["show", str(run), "--status", "solved,bogus"])
    assert r.exit_code == 2 and "unknown status bogus" in r.output
    tid = SMALL_TASKS[0]
    r = runner.invoke(cli_app, ["show", str(run), tid, "--candidates", "2"])
    assert r.exit_code == 0 and "the best 2 of" in r.stdout
    table = r.stdout.split("the best 2 of", 1)[1].splitlines()[2:]
    assert len([line for line in table if re.match(r"r\d+/q\d+/c\d+ ", line)]) == 2
