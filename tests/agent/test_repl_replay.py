"""A REPL run (search.mode 'repl') recorded with a scripted model (test double) replays exactly:
the conversations ask the same questions because the sandbox answers the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.rundir import compare_runs
from agent.trace import read_trace
from recorded_run import make_scripted_run, source_config
from scripted_backend import ROT180_OTHER, ScriptedReplBackend, run, submit

ROOT = Path(__file__).resolve().parents[2]
ROT_PROGRAM = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(np.array(grid), 2)\n"


def _replay_script(rid, turn, messages):
    if turn < 0:
        return ROT180_OTHER
    if turn == 0:
        return run("print(train_inputs[0].shape)\nnp.rot90(train_inputs[0], 2)"), "Rotation?"
    return submit(ROT_PROGRAM)


def test_a_recorded_repl_run_replays_identical(tmp_path):
    cfg = source_config(["66e6c45b", "be03b35f"], **{"search.mode": "'repl'", "search.repl_fraction": 0.5})
    rec = make_scripted_run(tmp_path / "run", cfg=cfg, backend=ScriptedReplBackend(_replay_script))
    events = list(read_trace(rec / "trace.jsonl"))
    assert {e.event for e in events} >= {"tool_call", "repl_end"}
    assert any(getattr(e, "reasoning", None) == "Rotation?" for e in events if e.event == "completion")
    out = tmp_path / "replayed"
    r = subprocess.run([sys.executable, "-m", "arcsynth", "replay", str(rec), "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert compare_runs(rec, out) == []
    replayed = list(read_trace(out / "trace.jsonl"))

    def repl_events(evs):  # per conversation (tasks run concurrently), CPU times aside
        return sorted((e.conversation, e.event, getattr(e, "call", -1), e.model_dump_json(exclude={"t", "cpu_s", "sandbox_cpu_s"}))
                      for e in evs if e.event in ("tool_call", "repl_end"))

    assert repl_events(replayed) == repl_events(events)


def _tools_script(rid, turn, messages):
    from agent.backends.base import Completion, ToolCall

    if turn == 0:
        call = ToolCall(id="c0", name="run_python", arguments='{"code": "train_inputs[0].shape"}')
    else:
        assert messages[-1].role == "tool" and messages[-1].tool_call_id == "c0"
        call = ToolCall(id="c1", name="submit", arguments=json.dumps({"program": ROT_PROGRAM}))
    return Completion(text="", prompt_tokens=10, completion_tokens=5, finish_reason="tool_calls", latency_s=0.0,
                      reasoning=f"turn {turn}", tool_calls=[call])


def test_a_recorded_function_calling_run_replays_identical(tmp_path):
    cfg = source_config(["66e6c45b"], **{"search.mode": "'repl'", "model.backend": "'openai'",
                                         "model.base_url": "'http://127.0.0.1:9/v1'", "model.tool_calls": "true"})
    rec = make_scripted_run(tmp_path / "run", cfg=cfg, backend=ScriptedReplBackend(_tools_script))
    events = list(read_trace(rec / "trace.jsonl"))
    assert [e.outcome for e in events if e.event == "repl_end"] == ["submitted"] * 6
    assert any(m.get("tool_calls") for e in events if e.event == "prompt" for m in e.messages)
    out = tmp_path / "replayed"
    r = subprocess.run([sys.executable, "-m", "arcsynth", "replay", str(rec), "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert compare_runs(rec, out) == []
