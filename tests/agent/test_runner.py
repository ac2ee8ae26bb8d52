"""Many tasks in flight: overlap of generation and verification, failures, resume, summary.

The model is a scripted test double that sleeps like a real one and serves one
request at a time (as the in-process backend does); the sandbox, the recorder and
the ARC tasks are real.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from agent.config import BudgetConfig, PromptConfig, RunConfig, SamplingConfig
from agent.rundir import Recorder, RunDir
from agent.runner import run_tasks
from agent.trace import read_trace
from arcsynth.datasets import load_dataset
from sandbox import Sandbox, SandboxConfig
from scripted_backend import FLIPLR, IDENTITY, ROT180, MemoryRecorder, ScriptedBackend

pytestmark = pytest.mark.asyncio(loop_scope="module")

TASKS = ["3c9b0459", "67a3c6ac", "6150a2bd", "68b16354"]  # rot180, fliplr, rot180, flipud


@pytest.fixture(scope="module")
def tasks():
    ds = load_dataset("arc1:train")
    return [ds.get(t) for t in TASKS]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox():
    async with Sandbox(SandboxConfig()) as sb:
        yield sb


def make_config(concurrency: int, **budget) -> RunConfig:
    budget.setdefault("stop_after_passing", 1)
    return RunConfig(
        seed=3,
        concurrency=concurrency,
        sampling=SamplingConfig(samples_per_prompt=2, max_tokens=200),
        prompt=PromptConfig(max_prompt_tokens=6000),
        budget=BudgetConfig(**budget),
    )


def rot_solves_in_round_1(rid, messages, params):
    # Wrong programs first (they get verified, then refined), the right one on refinement.
    return [ROT180, FLIPLR] if "/r1/" in rid else [FLIPLR, IDENTITY]


async def test_tasks_overlap_and_verification_runs_while_the_model_generates(tasks, sandbox, tmp_path):
    backend = ScriptedBackend(rot_solves_in_round_1, delay_s=0.25, serial=True)
    run_dir = RunDir.create(tmp_path / "run")
    with Recorder(run_dir) as recorder:
        summary = await run_tasks(tasks, make_config(concurrency=3, rounds=2), backend, sandbox, recorder)
    events = list(read_trace(run_dir.trace_path))

    # Several tasks in flight at once.
    open_tasks, most = set(), 0
    for e in events:
        if e.event == "task_start":
            open_tasks.add(e.task_id)
        elif e.event == "task_result":
            open_tasks.discard(e.task_id)
        most = max(most, len(open_tasks))
    assert most == 3

    # Programs of one task were verified while the model was generating for another.
    calls = backend.calls
    overlapped = [
        v for v in events if v.event == "verdict"
        if any(c.started < v.t < c.ended and not c.request_id.startswith(v.task_id + "/") for c in calls)
    ]
    assert len(overlapped) >= 3

    # The model was never left idle while work was waiting: each request starts as the previous ends.
    ordered = sorted(calls, key=lambda c: c.started)
    gaps = [b.started - a.ended for a, b in zip(ordered, ordered[1:])]
    assert max(gaps) < 0.15, gaps
    busy = sum(c.ended - c.started for c in calls)
    assert busy / summary.wall_s > 0.85

    assert summary.tasks == 4 and summary.solved_train == 3  # fliplr in round 0, the two rot180 tasks in round 1
    assert set(summary.submission) == set(TASKS)
    assert all(len(a) == 1 and set(a[0]) == {"attempt_1", "attempt_2"} for a in summary.submission.values())
    assert run_dir.done_task_ids() == set(TASKS)
    assert summary.n_programs == sum(e.event == "program" for e in events)
    assert summary.completion_tokens_per_s > 0 and summary.programs_per_s > 0
    assert summary.sandbox["candidates"] >= sum(e.event == "verdict" for e in events)  # its throughput counters


async def test_a_backend_failure_stops_only_its_task(tasks, sandbox):
    backend = ScriptedBackend(lambda rid, m, p: [ROT180, FLIPLR], fail=lambda rid: rid.startswith("67a3c6ac/"))
    recorder = MemoryRecorder()
    seen = []
    summary = await run_tasks(
        tasks, make_config(concurrency=2, rounds=1), backend, sandbox, recorder,
        progress=seen.append, ctx_options={"retry_backoff_s": 0.01},
    )
    assert summary.errors == 1 and summary.tasks == 4
    bad = {o.task_id: o for o in summary.outcomes}["67a3c6ac"]
    assert bad.status == "error" and "backend failed" in bad.stop_reason
    assert [e.task_id for e in recorder.of("task_error")] == ["67a3c6ac"]
    assert set(recorder.results) == set(TASKS)  # every task recorded, the failed one included
    assert {o.task_id for o in seen} == set(TASKS)
    assert summary.solved_train == 2  # the rot180 tasks after the failure still ran


async def test_done_tasks_are_not_run_again(tasks, sandbox):
    backend = ScriptedBackend(lambda rid, m, p: [ROT180])
    summary = await run_tasks(tasks, make_config(concurrency=2, rounds=1), backend, sandbox, MemoryRecorder(), done={"3c9b0459", "6150a2bd"})
    assert summary.skipped_done == 2 and summary.tasks == 2
    assert {c.request_id.split("/")[0] for c in backend.calls} == {"67a3c6ac", "68b16354"}
    assert summary.score == 0.0  # rot180 is wrong for both remaining tasks


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_end_to_end_with_the_real_smollm2_model(tasks, sandbox, tmp_path):
    from agent.backends import ModelConfig, make_backend

    config = RunConfig(
        seed=0,
        concurrency=1,
        model=ModelConfig(backend="transformers", model="smollm2", device="cpu"),
        sampling=SamplingConfig(samples_per_prompt=2, max_tokens=64, temperature=1.0),
        prompt=PromptConfig(max_prompt_tokens=3000),
        budget=BudgetConfig(rounds=1, first_prompts=1, stop_after_passing=1),
    )
    backend = make_backend(config.model)
    await backend.start()
    run_dir = RunDir.create(tmp_path / "smol")
    try:
        with Recorder(run_dir) as recorder:
            summary = await run_tasks(tasks[:1], config, backend, sandbox, recorder)
    finally:
        await backend.close()
    events = list(read_trace(run_dir.trace_path))
    completions = [e for e in events if e.event == "completion"]
    programs = [e for e in events if e.event == "program"]
    outcome = summary.outcomes[0]
    assert outcome.status == "done", outcome.stop_reason
    assert len(completions) == outcome.n_programs == len(programs) >= 2
    assert all(c.completion_tokens > 0 and c.text for c in completions)
    assert outcome.completion_tokens == sum(c.completion_tokens for c in completions)
    verdicts = [e for e in events if e.event == "verdict"]
    assert len(verdicts) == sum(p.status == "ok" and p.duplicate_of is None for p in programs)
    assert events[-1].event == "task_result" and summary.submission["3c9b0459"][0].keys() == {"attempt_1", "attempt_2"}
    assert run_dir.done_task_ids() == {"3c9b0459"}


async def test_the_collector_is_set_for_a_run_and_as_before_afterwards():
    import gc

    from agent.runner import RUN_YOUNG_THRESHOLD, collector_for_a_run

    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    long_lived = [[k] for k in range(1000)]
    with collector_for_a_run():
        assert gc.get_threshold() == (RUN_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() >= frozen_before + len(long_lived)  # what existed is out of every collection
        assert gc.get_count()[0] < RUN_YOUNG_THRESHOLD
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
