"""The solve loop, with a scripted model (test double) and the REAL sandbox on real ARC tasks.

3c9b0459 (arc1 train) is "rotate by 180 degrees"; 67a3c6ac is "mirror left-right".
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from agent.config import BudgetConfig, PromptConfig, RunConfig, SamplingConfig
from agent.loop import SolveContext, solve_task
from agent.seeds import derive_seed
from arcsynth.datasets import load_dataset
from arcsynth.grid import grid_to_list
from sandbox import Sandbox, SandboxConfig
from scripted_backend import (
    FLIPLR,
    IDENTITY,
    NO_CODE,
    ROT180,
    ROT180_AGAIN,
    ROT180_OTHER,
    MemoryRecorder,
    ScriptedBackend,
    fenced,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROT = "3c9b0459"


@pytest.fixture(scope="module")
def arc1():
    return load_dataset("arc1:train")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox():
    async with Sandbox(SandboxConfig()) as sb:
        yield sb


def make_config(samples: int = 1, max_tokens: int = 200, **budget) -> RunConfig:
    budget.setdefault("stop_after_passing", None)
    return RunConfig(
        seed=0,
        sampling=SamplingConfig(samples_per_prompt=samples, max_tokens=max_tokens),
        prompt=PromptConfig(max_prompt_tokens=6000),
        budget=BudgetConfig(**budget),
    )


def by_request(table: dict[str, list[str]], default: list[str] = (IDENTITY,)):
    """A script answering '<task>/r<round>/q<index>' from ``table`` (keyed by 'r0/q0')."""
    return lambda rid, messages, params: table.get(rid.split("/", 1)[1], list(default))


async def solve(task, sandbox, backend, config, **ctx):
    rec = MemoryRecorder()
    outcome = await solve_task(task, SolveContext(config=config, backend=backend, sandbox=sandbox, recorder=rec, **ctx))
    return outcome, rec


async def test_solves_when_a_correct_program_is_sampled(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({"r0/q0": [NO_CODE, FLIPLR, ROT180]}))
    outcome, rec = await solve(task, sandbox, backend, make_config(samples=3, rounds=1))

    assert outcome.solved_train and outcome.n_passing == 1 and outcome.n_programs == 3
    assert outcome.score == 1.0
    assert outcome.attempts[0]["attempt_1"] == grid_to_list(task.test[0].output)
    verdicts = {e.program_id: e for e in rec.of("verdict")}
    assert verdicts[f"{ROT}/r0/q0/c2"].all_train_pass and not verdicts[f"{ROT}/r0/q0/c1"].all_train_pass
    assert verdicts[f"{ROT}/r0/q0/c2"].test[0]["status"] == "unchecked"  # answers never compared during a solve
    # Every event as it happened, in a sensible order.
    kinds = [e.event for e in rec.events]
    assert kinds[0] == "task_start" and kinds[-1] == "task_result"
    assert kinds.index("prompt") < kinds.index("completion") < kinds.index("program") < kinds.index("verdict") < kinds.index("vote")
    prompt = rec.of("prompt")[0]
    assert prompt.request_id == f"{ROT}/r0/q0" and prompt.kind == "first"
    assert prompt.sampling["seed"] == derive_seed(0, ROT, 0, 0) and prompt.sampling["n"] == 3
    assert rec.of("task_result")[0].score == 1.0


async def test_refines_with_feedback_of_the_parent(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({"r0/q0": [FLIPLR], "r1/q0": [ROT180]}))
    outcome, rec = await solve(task, sandbox, backend, make_config(rounds=3, refine_prompts=1, stop_after_passing=1))

    assert outcome.solved_train and outcome.score == 1.0
    assert "pass" in outcome.stop_reason
    refine = rec.of("prompt")[1]
    assert refine.kind == "refine" and refine.round == 1
    parent = f"{ROT}/r0/q0/c0"
    assert refine.parent_ids == [parent]
    text = "\n".join(m["content"] for m in refine.messages)
    assert "np.fliplr" in text  # the parent's source
    assert "Expected output" in text and "Your output" in text and "Cell diff" in text  # its feedback
    child = [e for e in rec.of("program") if e.program_id == f"{ROT}/r1/q0/c0"][0]
    assert child.parent_ids == [parent]
    assert len(backend.calls) == 2  # stopped after the passing refinement, no round 2


async def test_identical_programs_run_once_and_identical_behaviours_merge(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({"r0/q0": [ROT180, ROT180_AGAIN, ROT180_OTHER]}))
    outcome, rec = await solve(task, sandbox, backend, make_config(samples=3, rounds=1))

    programs = rec.of("program")
    assert [p.duplicate_of for p in programs] == [None, f"{ROT}/r0/q0/c0", None]
    assert programs[0].program_hash == programs[1].program_hash != programs[2].program_hash
    verdicts = {e.program_id: e for e in rec.of("verdict")}
    assert set(verdicts) == {f"{ROT}/r0/q0/c0", f"{ROT}/r0/q0/c2"}  # the duplicate never ran
    # Verification finishes in whatever order the sandbox gets to it: the later
    # of the two names the earlier (the vote below lists them in program order).
    c0, c2 = f"{ROT}/r0/q0/c0", f"{ROT}/r0/q0/c2"
    dups = {pid: e.behaviour_duplicate_of for pid, e in verdicts.items()}
    assert dups in ({c0: None, c2: c0}, {c0: c2, c2: None})
    groups = rec.of("vote")[0].groups
    assert len(groups) == 1 and groups[0]["behaviours"] == 1
    assert groups[0]["program_ids"] == [f"{ROT}/r0/q0/c0", f"{ROT}/r0/q0/c2"]
    assert outcome.n_programs == 3 and outcome.n_passing == 2


async def test_stops_early_after_enough_passing_programs(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({"r0/q0": [ROT180, ROT180_OTHER]}), delay_s=0.3, serial=True)
    config = make_config(samples=2, rounds=3, first_prompts=3, refine_prompts=2, stop_after_passing=2)
    outcome, rec = await solve(task, sandbox, backend, config)

    assert outcome.n_passing == 2 and outcome.stop_reason.startswith("2 programs pass")
    # q1 was generating when q0's programs passed: it was cancelled, q2 never started.
    assert [c.request_id for c in backend.calls] == [f"{ROT}/r0/q0", f"{ROT}/r0/q1"]
    assert {e.request_id for e in rec.of("completion")} == {f"{ROT}/r0/q0"}
    assert not [e for e in rec.of("prompt") if e.round > 0]


async def test_program_budget_is_never_exceeded(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({}, default=[FLIPLR, IDENTITY]))
    config = make_config(samples=2, rounds=4, first_prompts=3, refine_prompts=3, max_programs=5)
    outcome, rec = await solve(task, sandbox, backend, config)

    assert outcome.n_programs == 5 and len(rec.of("program")) == 5
    assert [c.params.n for c in backend.calls] == [2, 2, 1]  # the last request shrunk to fit
    assert outcome.stop_reason == "max_programs"


async def test_completion_token_budget_is_never_exceeded(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({}, default=[FLIPLR]))  # each completion is ~20 words = tokens here
    config = make_config(samples=2, max_tokens=40, rounds=5, first_prompts=2, refine_prompts=2, max_completion_tokens=100)
    outcome, rec = await solve(task, sandbox, backend, config)

    assert 0 < outcome.completion_tokens <= 100
    assert sum(e.completion_tokens for e in rec.of("completion")) == outcome.completion_tokens
    assert outcome.stop_reason == "max_completion_tokens"


async def test_wall_time_budget_cuts_a_slow_request(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({}, default=[ROT180]), delay_s=2.0)
    outcome, rec = await solve(task, sandbox, backend, make_config(rounds=2, max_task_wall_s=0.3))

    assert outcome.stop_reason == "max_task_wall_s"
    assert outcome.wall_s < 1.5 and outcome.n_programs == 0
    assert not rec.of("completion")
    assert len(outcome.attempts) == len(task.test)  # still answers (with the default)


async def test_extraction_failures_are_recorded_and_never_crash(arc1, sandbox):
    task = arc1.get("67a3c6ac")
    broken = fenced("def transform(grid):\n    return [row[::-1] for row in grid")  # unclosed bracket
    no_entry = fenced("x = 1\nprint(x)")
    backend = ScriptedBackend(by_request({}, default=[NO_CODE, broken, no_entry]))
    outcome, rec = await solve(task, sandbox, backend, make_config(samples=3, rounds=2, refine_prompts=1))

    statuses = [p.status for p in rec.of("program")]
    assert statuses == ["no_code", "syntax_error", "no_transform"] * 2
    assert all(p.detail for p in rec.of("program"))
    assert rec.of("program")[1].source is not None  # the broken code is kept for the viewer
    assert not rec.of("verdict")
    # No parent to refine: round 1 sampled fresh programs instead.
    assert [p.kind for p in rec.of("prompt")] == ["first", "first"]
    assert outcome.status == "done" and not outcome.solved_train
    assert outcome.attempts[0]["attempt_1"] == grid_to_list(task.test[0].input)


async def test_backend_failure_ends_the_task_with_a_task_error(arc1, sandbox):
    task = arc1.get(ROT)
    backend = ScriptedBackend(by_request({"r0/q0": [FLIPLR]}), fail=lambda rid: rid.endswith("r1/q0"))
    config = make_config(rounds=3, refine_prompts=1)
    outcome, rec = await solve(task, sandbox, backend, config, backend_retries=1, retry_backoff_s=0.01)

    assert outcome.status == "error" and "scripted failure" in outcome.stop_reason
    errors = rec.of("task_error")
    assert len(errors) == 1 and f"{ROT}/r1/q0" in errors[0].reason
    assert [c.request_id for c in backend.calls].count(f"{ROT}/r1/q0") == 2  # one retry
    assert rec.events[-1].event == "task_result"
    # Programs found before the failure still answer.
    assert outcome.attempts[0]["attempt_1"] == grid_to_list(__import__("numpy").fliplr(task.test[0].input))


async def test_a_task_whose_prompt_cannot_fit_is_skipped(arc1, sandbox):
    big = max(arc1, key=lambda t: sum(p.input.size for p in (*t.train, *t.test)))
    backend = ScriptedBackend(by_request({}, default=[ROT180]))
    config = make_config(rounds=1)
    config.prompt.max_prompt_tokens = 256
    outcome, rec = await solve(big, sandbox, backend, config)

    assert outcome.status == "skipped" and not backend.calls
    skipped = rec.of("task_skipped")
    assert len(skipped) == 1 and big.id in skipped[0].reason
    assert len(outcome.attempts) == len(big.test)


async def test_same_seed_same_requests(arc1, sandbox):
    task = arc1.get(ROT)

    async def requests():
        backend = ScriptedBackend(by_request({"r0/q0": [FLIPLR, IDENTITY]}))
        await solve(task, sandbox, backend, make_config(samples=2, rounds=3, refine_prompts=2))
        return [(c.request_id, c.params.seed, [m.content for m in c.messages]) for c in backend.calls]

    first, second = await requests(), await requests()
    assert first == second
    assert len({seed for _, seed, _ in first}) == len(first)  # every request its own seed


async def test_a_prefilled_reply_is_extracted_with_its_prefill(tmp_path):
    # The model only continues "```python\ndef transform(grid):\n": its completions
    # are function bodies, and the programs verified are the prefill plus the body.
    from agent.rundir import RunDir
    from agent.trace import ProgramEvent, PromptEvent, read_trace
    from arcsynth.cli.solve import execute_run, select_run_tasks
    from recorded_run import source_config
    from scripted_backend import ScriptedBackend

    seen = []

    def body_only(request_id, messages, params):
        seen.append(messages[-1])
        return ["    return [row[::-1] for row in grid[::-1]]\n"] * params.n  # rotate by 180 degrees

    cfg = source_config(["3c9b0459"], **{"prompt.style": "code", "prompt.prefill": '"```python\\ndef transform(grid):\\n"',
                                         "data.dataset": "arc1:train"})
    dataset, tasks = select_run_tasks(cfg)
    rd = RunDir.create(tmp_path / "run")
    await execute_run(cfg, rd, tasks, argv=["test"], resumed=False, dataset_name=dataset.name, live=False,
                      backend=ScriptedBackend(body_only))
    assert seen and seen[0].role == "assistant" and seen[0].content.endswith("def transform(grid):\n")
    events = list(read_trace(rd.trace_path))
    programs = [e for e in events if isinstance(e, ProgramEvent)]
    assert programs and all(p.status == "ok" for p in programs)
    assert programs[0].source.startswith("def transform(grid):\n    return")
    assert rd.read_results()["3c9b0459"]["solved_train"] is True
    assert any(isinstance(e, PromptEvent) and e.messages[-1]["role"] == "assistant" for e in events)


async def _run_rot180(tmp_path, programs, **overrides):
    from agent.rundir import RunDir
    from arcsynth.cli.solve import execute_run, select_run_tasks
    from recorded_run import source_config
    from scripted_backend import ScriptedBackend

    def script(request_id, messages, params):
        return [f"```python\n{programs[i % len(programs)]}\n```" for i in range(params.n)]

    cfg = source_config(["3c9b0459"], **{"data.dataset": "arc1:train", "budget.stop_after_passing": 100,
                                         "budget.rounds": 3, **overrides})
    dataset, tasks = select_run_tasks(cfg)
    rd = RunDir.create(tmp_path / "run")
    await execute_run(cfg, rd, tasks, argv=["test"], resumed=False, dataset_name=dataset.name, live=False,
                      backend=ScriptedBackend(script))
    return rd.read_results()["3c9b0459"]


async def test_a_task_stops_once_its_passing_programs_agree_on_the_test_outputs(tmp_path):
    rot_np = "import numpy as np\ndef transform(grid):\n    return np.rot90(grid, 2)"
    rot_list = "def transform(grid):\n    return [list(r)[::-1] for r in grid[::-1]]"
    rot_flip = "import numpy as np\ndef transform(grid):\n    return np.flip(np.flip(grid, 0), 1)"
    result = await _run_rot180(tmp_path / "a", [rot_np, rot_list, rot_flip], **{"budget.stop_on_agreement": 3})
    assert "agree on every test output" in result["stop_reason"] and result["n_programs"] == 3


async def test_passing_programs_that_disagree_on_a_test_output_do_not_stop_the_task(tmp_path):
    from arcsynth.datasets import load_dataset

    task = load_dataset("arc1:train").get("3c9b0459")
    test_input = task.test[0].input.tolist()
    rot_np = "import numpy as np\ndef transform(grid):\n    return np.rot90(grid, 2)"
    # Right on every train pair, different on the test input: the vote is not settled.
    odd = ("import numpy as np\ndef transform(grid):\n"
           f"    if grid.tolist() == {test_input!r}:\n        return np.zeros_like(grid)\n    return np.rot90(grid, 2)")
    result = await _run_rot180(tmp_path / "b", [rot_np, odd], **{"budget.stop_on_agreement": 2})
    assert "agree" not in result["stop_reason"] and result["n_passing"] >= 2
