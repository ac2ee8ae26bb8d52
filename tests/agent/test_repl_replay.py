"""A REPL run (search.mode 'repl') recorded with a scripted model (test double) replays exactly:
the conversations ask the same questions because the sandbox answers the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.rundir import compare_runs
from agent.trace import read_trace
from recorded_run import make_scripted_run, source_config
from scripted_backend import ROT180_OTHER, ScriptedReplBackend, run, submit

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
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "replayed"
    r = subprocess.run([sys.executable, "-m", "arcsynth", "replay", str(rec), "--out", str(out)], cwd=root,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert compare_runs(rec, out) == []
    replayed = list(read_trace(out / "trace.jsonl"))

    def repl_events(evs):  # per conversation (tasks run concurrently), CPU times aside
        return sorted((e.conversation, e.event, getattr(e, "call", -1), e.model_dump_json(exclude={"t", "cpu_s", "sandbox_cpu_s"}))
                      for e in evs if e.event in ("tool_call", "repl_end"))

    assert repl_events(replayed) == repl_events(events)
