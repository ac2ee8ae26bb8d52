"""Replay: the backend serves recorded completions and refuses a diverged run;
a real recorded quickstart run replays to identical results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.backends import BackendError, Message, SamplingParams
from agent.backends.replay import ReplayBackend, ReplayDivergence, TokenCountRecorder, messages_digest
from agent.rundir import RunDir, compare_runs
from agent.trace import CompletionEvent, PromptEvent, TaskStart, TraceWriter, read_trace

ROOT = Path(__file__).resolve().parents[2]

MSGS = [Message(role="system", content="You write Python."), Message(role="user", content="Task 1")]


def record(run: Path, *events) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.toml").write_text("")
    (run / "provenance.json").write_text(json.dumps({"config_hash": "h", "model": {"backend": "transformers", "model": "smollm2"}}))
    with TraceWriter(run / "trace.jsonl") as w:
        for ev in events:
            w.write(ev)


def prompt(rid: str, msgs=MSGS, tokens: int = 11) -> PromptEvent:
    return PromptEvent(task_id="t", request_id=rid, round=0, kind="first",
                       messages=[m.model_dump() for m in msgs], prompt_tokens=tokens, sampling={"n": 2})


def completion(rid: str, index: int, text: str) -> CompletionEvent:
    return CompletionEvent(task_id="t", request_id=rid, index=index, text=text, prompt_tokens=11,
                           completion_tokens=7 + index, finish_reason="length" if index else "stop", latency_s=1.25)


async def test_serves_recorded_completions_exactly(tmp_path):
    run = tmp_path / "run"
    # index order on disk differs from index order: replay orders by index
    record(run, TaskStart(task_id="t", n_train=1, n_test=1), prompt("t/r0/q0"),
           completion("t/r0/q0", 1, "second"), completion("t/r0/q0", 0, "first"))
    b = ReplayBackend(run)
    await b.start()
    out = await b.generate(MSGS, SamplingParams(n=2), "t/r0/q0")
    assert [c.text for c in out] == ["first", "second"]
    assert [(c.completion_tokens, c.finish_reason, c.latency_s, c.prompt_tokens) for c in out] == [
        (7, "stop", 1.25, 11), (8, "length", 1.25, 11)]
    assert b.count_tokens(MSGS) == 11
    assert b.model_id == "smollm2"
    assert b.provenance()["source_run"] == "run" and b.provenance()["source_model"]["model"] == "smollm2"


async def test_a_different_prompt_is_a_divergence(tmp_path):
    run = tmp_path / "run"
    record(run, prompt("t/r0/q0"), completion("t/r0/q0", 0, "x"), completion("t/r0/q0", 1, "y"))
    b = ReplayBackend(run)
    await b.start()
    other = [MSGS[0], Message(role="user", content="Task 2")]
    with pytest.raises(ReplayDivergence, match=r"t/r0/q0: prompt message 1 differs"):
        await b.generate(other, SamplingParams(n=2), "t/r0/q0")
    with pytest.raises(ReplayDivergence, match="t/r9/q9 was never made"):
        await b.generate(MSGS, SamplingParams(n=2), "t/r9/q9")
    with pytest.raises(ReplayDivergence, match="3 completions asked, 2 recorded"):
        await b.generate(MSGS, SamplingParams(n=3), "t/r0/q0")
    with pytest.raises(ReplayDivergence, match="never built"):
        b.count_tokens(other)


async def test_last_attempt_of_a_resumed_task_is_served(tmp_path):
    run = tmp_path / "run"
    record(run, prompt("t/r0/q0"), completion("t/r0/q0", 0, "killed run"),
           prompt("t/r0/q0"), completion("t/r0/q0", 0, "resumed run"))
    b = ReplayBackend(run)
    await b.start()
    assert [c.text for c in await b.generate(MSGS, SamplingParams(n=1), "t/r0/q0")] == ["resumed run"]


async def test_token_counts_of_unsent_prompts_are_recorded_and_replayed(tmp_path):
    class Counter:  # TEST DOUBLE of a backend with a tokenizer
        name, model_id = "counter", "counter"

        def count_tokens(self, messages):
            return 1000 + len(messages[-1].content)

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("")
    with TraceWriter(run / "trace.jsonl") as w:
        wrapped = TokenCountRecorder(Counter(), w.write)
        big = [Message(role="user", content="a long prompt that got shrunk")]
        assert wrapped.count_tokens(big) == 1029
        assert wrapped.count_tokens(big) == 1029  # recorded once
        w.write(prompt("t/r0/q0"))
    assert sum(e.event == "token_count" for e in read_trace(run / "trace.jsonl")) == 1
    b = ReplayBackend(run)
    await b.start()
    assert b.count_tokens(big) == 1029
    assert b.count_tokens(MSGS) == 11
    assert wrapped.model_id == "counter"  # everything else passes through


async def test_no_trace_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="no trace.jsonl"):
        await ReplayBackend(tmp_path).start()


def test_compare_runs_names_differences(tmp_path):
    a, b = RunDir.create(tmp_path / "a"), RunDir.create(tmp_path / "b")
    for rd, passed in ((a, 2), (b, 3)):
        rd.write_result("t", {"task_id": "t", "n_passing": passed, "wall_s": 1.0 + passed})
        with TraceWriter(rd.trace_path) as w:
            w.write(TaskStart(task_id="t", n_train=1, n_test=1))
            w.write(completion("t/r0/q0", 0, "same"))
    b.write_result("u", {"task_id": "u"})
    diffs = compare_runs(a.path, b.path)
    assert any("task t: result differs at n_passing: 2 vs 3" in d for d in diffs)
    assert any("task u: finished in" in d for d in diffs)
    assert not any("wall_s" in d for d in diffs)  # timings are not results
    assert compare_runs(a.path, a.path) == []


def arcsynth(*args) -> list[str]:
    return [sys.executable, "-m", "arcsynth", *map(str, args)]


@pytest.fixture(scope="module")
def scripted_recorded(tmp_path_factory) -> Path:
    from recorded_run import SMALL_TASKS, make_scripted_run

    return make_scripted_run(tmp_path_factory.mktemp("rec") / "run", SMALL_TASKS[:3])


def test_cli_replay_of_a_scripted_run_is_identical(scripted_recorded, tmp_path):
    out = tmp_path / "replayed"
    r = subprocess.run(arcsynth("replay", scripted_recorded, "--out", out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "replay identical" in r.stdout
    assert compare_runs(scripted_recorded, out) == []
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["model"]["backend"] == "replay" and prov["model"]["source_run"] == "run"


def test_cli_replay_reports_a_diverged_run(scripted_recorded, tmp_path):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(scripted_recorded, tampered)
    lines = (tampered / "trace.jsonl").read_text().splitlines()
    for i, line in enumerate(lines):
        ev = json.loads(line)
        if ev["event"] == "prompt" and ev["round"] == 0:
            ev["message_parts"][-1]["parts"].append(" (edited)")  # format 2: messages are stored as parts
            lines[i] = json.dumps(ev)
            victim = ev["task_id"]
            break
    (tampered / "trace.jsonl").write_text("\n".join(lines) + "\n")
    r = subprocess.run(arcsynth("replay", tampered, "--out", tmp_path / "out"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr + r.stdout
    assert "differs" in r.stdout and f"task {victim}" in r.stdout
    trace = list(read_trace(tmp_path / "out" / "trace.jsonl"))
    errors = [e for e in trace if e.event == "task_error" and e.task_id == victim]
    assert errors and "diverged" in errors[0].reason


# The quickstart recorded as on a fresh machine, before `scripts/test.sh` installs scipy:
# scipy is hidden from the recording process (nothing is uninstalled).
_WITHOUT_SCIPY = """
import importlib.metadata as md, importlib.util as u, sys
find, version = u.find_spec, md.version
u.find_spec = lambda name, *a, **k: None if name.split(".")[0] == "scipy" else find(name, *a, **k)
def _version(name):
    if name == "scipy":
        raise md.PackageNotFoundError(name)
    return version(name)
md.version = _version
sys.argv[0] = "arcsynth"
from arcsynth.cli import main
main()
"""


@pytest.mark.slow
def test_real_quickstart_run_replays_bit_for_bit_after_scipy_is_installed(tmp_path):
    """Record a short real run of the quickstart (the embedded Qwen model) on a machine without
    scipy, replay it where scipy is installed, compare everything."""
    recorded = tmp_path / "recorded"
    r = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SCIPY, "solve", str(ROOT / "runs" / "quickstart.toml"), "--out", str(recorded),
         'data.tasks=["68b16354"]', "sampling.samples_per_prompt=3", "sampling.max_tokens=48", "budget.rounds=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    prov = json.loads((recorded / "provenance.json").read_text())
    assert prov["model"]["weights_sha256"] and "scipy" not in prov["packages"]
    assert "offer_scipy = false" in (recorded / "config.toml").read_text()
    trace = list(read_trace(recorded / "trace.jsonl"))
    completions = [e for e in trace if e.event == "completion"]
    assert len(completions) >= 3 and all(c.completion_tokens > 0 for c in completions)
    # The prompt recorded the prefill as the reply's start, and programs reached the sandbox.
    prompts = [e for e in trace if e.event == "prompt"]
    assert all(p.messages[-1]["role"] == "assistant" and p.messages[-1]["content"].endswith("def transform(grid):\n") for p in prompts)
    assert any(e.event == "verdict" for e in trace)

    import importlib.util

    assert importlib.util.find_spec("scipy") is not None  # the test extras installed it
    out = tmp_path / "replayed"
    r = subprocess.run(arcsynth("replay", recorded, "--out", out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert compare_runs(recorded, out) == []
    replayed = [e for e in read_trace(out / "trace.jsonl") if e.event == "completion"]
    assert [(c.text, c.completion_tokens, c.finish_reason, c.latency_s) for c in replayed] == [
        (c.text, c.completion_tokens, c.finish_reason, c.latency_s) for c in completions]
    a, b = (json.loads((d / "submission.json").read_text()) for d in (recorded, out))
    assert a == b


def as_format_1(run: Path) -> None:
    """Rewrite ``run``'s trace as format 1 wrote it: every event whole, no text events."""
    lines = []
    for ev in read_trace(run / "trace.jsonl"):
        d = json.loads(ev.model_dump_json(exclude={"message_parts", "source_span", "task_ids", "pid", "host"}))
        d["v"] = 1
        lines.append(json.dumps(d))
    (run / "trace.jsonl").write_text("\n".join(lines) + "\n")


def test_a_run_recorded_in_format_1_replays_identical(scripted_recorded, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(scripted_recorded, old)
    as_format_1(old)
    assert '"event":"text"' not in (old / "trace.jsonl").read_text()
    for result in (old / "results").glob("*.json"):  # nor did results count programs by status
        data = json.loads(result.read_text())
        del data["program_status_counts"]
        result.write_text(json.dumps(data))
    out = tmp_path / "replayed"
    r = subprocess.run(arcsynth("replay", old, "--out", out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert compare_runs(old, out) == [] and compare_runs(scripted_recorded, out) == []
    assert all(e.v == 2 for e in read_trace(out / "trace.jsonl"))


def test_replay_of_a_newer_format_is_refused_naming_the_version(scripted_recorded, tmp_path):
    import shutil

    new = tmp_path / "new"
    shutil.copytree(scripted_recorded, new)
    with open(new / "trace.jsonl", "a") as f:
        f.write(json.dumps({"v": 7, "t": 0, "event": "task_start", "task_id": "x", "n_train": 1, "n_test": 1}) + "\n")
    r = subprocess.run(arcsynth("replay", new, "--out", tmp_path / "out"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr + r.stdout
    assert "trace format version 7 is newer" in r.stderr and "Traceback" not in r.stderr


def _record_without_scipy(path: Path, monkeypatch) -> Path:
    """A scripted run recorded as on a machine without scipy (nothing is uninstalled)."""
    import importlib.util

    from agent.config import resolve_environment
    from recorded_run import SMALL_TASKS, make_scripted_run, source_config

    real = importlib.util.find_spec
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == "scipy" else real(name, *a, **k))
        cfg = resolve_environment(source_config(SMALL_TASKS[:2]))
        assert cfg.prompt.offer_scipy is False
        make_scripted_run(path, SMALL_TASKS[:2], cfg)
    prompts = [e for e in read_trace(path / "trace.jsonl") if isinstance(e, PromptEvent)]
    assert prompts and not any("scipy" in m["content"] for e in prompts for m in e.messages)
    return path


def test_a_run_replays_after_scipy_was_installed(tmp_path, monkeypatch):
    # The run's config records that scipy was not offered; the replay, with scipy
    # importable, builds the same prompts from it.
    src = _record_without_scipy(tmp_path / "run", monkeypatch)
    assert "offer_scipy = false" in (src / "config.toml").read_text()
    out = tmp_path / "replayed"
    r = subprocess.run(arcsynth("replay", src, "--out", out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "replay identical" in r.stdout and compare_runs(src, out) == []


def test_a_run_recorded_before_the_setting_existed_replays_from_its_provenance(tmp_path, monkeypatch):
    src = _record_without_scipy(tmp_path / "run", monkeypatch)
    config = src / "config.toml"
    config.write_text("\n".join(ln for ln in config.read_text().splitlines() if not ln.startswith("offer_scipy")) + "\n")
    prov = json.loads((src / "provenance.json").read_text())
    prov["packages"].pop("scipy", None)
    (src / "provenance.json").write_text(json.dumps(prov))
    out = tmp_path / "replayed"
    r = subprocess.run(arcsynth("replay", src, "--out", out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "replay identical" in r.stdout
