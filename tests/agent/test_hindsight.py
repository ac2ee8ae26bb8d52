"""Hindsight export: every record is re-verified in the real sandbox on the task it claims."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from arcsynth.cli import app
from arcsynth.task import task_from_json
from recorded_run import SMALL_TASKS, make_scripted_run
from sandbox import SandboxConfig, verify_program


def test_exported_records_reproduce_their_outputs_in_the_sandbox(tmp_path):
    run = make_scripted_run(tmp_path / "run", SMALL_TASKS[:3])
    out = tmp_path / "hindsight.jsonl"
    r = CliRunner().invoke(app, ["export", str(run), "--hindsight", str(out)])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and "records" in r.output
    assert any(rec["kind"] == "relabelled" for rec in records)
    behaviours = set()
    for rec in records:
        roles = [m["role"] for m in rec["messages"]]
        assert roles[-1] == "assistant" and "user" in roles
        source = rec["messages"][-1]["content"].removeprefix("```python\n").removesuffix("\n```")
        task = task_from_json(rec["task"], rec["task_id"])
        # The program, run again in the sandbox, computes exactly the outputs it is labelled with.
        v = verify_program(source, task, SandboxConfig(workers=1, pair_timeout_s=5, candidate_timeout_s=20), check_test=True)
        assert v.all_train_pass and all(p.status == "pass" for p in v.test), (rec["program_id"], v)
        # The identity is never exported, and each behaviour of a task once.
        assert any(p["output"] != p["input"] for p in rec["task"]["train"])
        key = (rec["task_id"], json.dumps(rec["task"], sort_keys=True))
        assert key not in behaviours
        behaviours.add(key)
    # The scripted run has crashing programs ('no idea'): none of them is exported.
    assert not any("no idea" in rec["messages"][-1]["content"] for rec in records)


def test_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(app, ["export", str(tmp_path), "--hindsight", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2 and "no trace.jsonl" in r.output and not (tmp_path / "o.jsonl").exists()
