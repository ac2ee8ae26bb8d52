"""`arcsynth bench pipeline` and its server double (figures, not a timed test)."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
from pathlib import Path

import httpx

from agent.backends.base import Message, SamplingParams
from agent.backends.openai_server import OpenAIBackend
from agent.benchmarks.server_double import MODEL_NAME, SOLUTIONS, OpenAIServerDouble, render_completion, repertoire, task_grids
from agent.program import extract_program
from arcsynth.datasets import load_dataset
from prompts import build_first_prompt
from sandbox import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[3]


def test_the_pool_solutions_solve_their_real_tasks_in_the_sandbox():
    tasks = {t.id: t for t in load_dataset("arc1:train") if t.id in SOLUTIONS}
    assert len(tasks) == len(SOLUTIONS) >= 15

    async def verify():
        async with Sandbox(SandboxConfig()) as sb:
            return await asyncio.gather(*(sb.run(extract_program(f"```python\n{src}```").source, tasks[tid], check_test=True)
                                          for tid, src in SOLUTIONS.items()))

    for tid, verdict in zip(SOLUTIONS, asyncio.run(verify())):
        assert verdict.all_train_pass and all(p.status == "pass" for p in verdict.test), tid


def test_completions_mix_every_kind_of_reply():
    rng = random.Random(0)
    statuses: dict[str, int] = {}
    for k in range(400):
        programs = repertoire(f"t{k % 20}", 16)
        text, reason = render_completion(programs[rng.randrange(16)], rng, 1024)
        e = extract_program(text, finish_reason=reason)
        statuses[e.status] = statuses.get(e.status, 0) + 1
    assert statuses.get("ok", 0) > 250 and statuses.get("no_code", 0) > 10 and statuses.get("syntax_error", 0) > 0
    # A task the pool has a solution for gets it in its repertoire; others do not.
    assert any(p.endswith(SOLUTIONS["67a3c6ac"]) for p in repertoire("67a3c6ac", 64))
    assert not any(p.endswith(SOLUTIONS["67a3c6ac"]) for p in repertoire("00576224", 64))


async def test_the_double_serves_the_openai_backend_and_knows_the_task_of_a_real_prompt():
    tasks = [t for t in load_dataset("arc1:train") if t.id in ("67a3c6ac", "6150a2bd", "00576224")]
    double = OpenAIServerDouble(task_grids("arc1:train", [t.id for t in tasks]))
    port = double.serve()
    backend = OpenAIBackend(MODEL_NAME, base_url=f"http://127.0.0.1:{port}")
    try:
        await backend.start()
        for task in tasks:
            prompt = build_first_prompt(task, encoding="spaced", max_prompt_tokens=6000, count_tokens=backend.count_tokens)
            assert double.finder.find(prompt.messages[-1].content) == task.id
        task = tasks[0]
        prompt = build_first_prompt(task, encoding="digits", max_prompt_tokens=6000, count_tokens=backend.count_tokens)
        completions = await backend.generate(prompt.messages, SamplingParams(n=6, seed=3, max_tokens=1024), "x/r0/q0")
        assert len(completions) == 6 and all(c.completion_tokens > 0 for c in completions)
        again = await backend.generate(prompt.messages, SamplingParams(n=6, seed=3, max_tokens=1024), "x/r0/q0")
        assert [c.text for c in again] == [c.text for c in completions]  # seeded, like a real server
        async with httpx.AsyncClient() as client:
            r = await client.post(f"http://127.0.0.1:{port}/v1/nothing", json={})
            assert r.status_code == 404
    finally:
        await backend.close()
        double.shutdown()
    assert double.requests == 2


def test_bench_pipeline_prints_its_figures_and_the_ratio_last(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "arcsynth", "bench", "pipeline", "--tasks", "4", "--rounds", "2", "--prompts", "1",
         "--samples", "4", "--repeat", "2", "--keep", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"pipeline/sandbox \d+\.\d\d", lines[-1]), lines[-1]
    pipeline = next(line for line in lines if line.startswith("pipeline:"))
    assert re.search(r"32 programs in [\d.]+ s = [\d.]+ programs/s end to end", pipeline)
    assert any(re.match(r"sandbox alone: the same \d+ programs", line) for line in lines)
    assert any(re.match(r"main process: +CPU \d+% of one core, [\d.]+ ms per program; peak memory \d+ MB", line) for line in lines)
    assert any(re.match(r"trace: +\d+ bytes per program", line) for line in lines)
    assert any(re.match(r"limit: +the sandbox alone takes [\d.]+ core-ms per program .* caps? it at \d+\.\d\d", line) for line in lines)
    assert any(re.match(r"idle: +the cores stood idle \d+\.\d% of the pipeline run and \d+\.\d% of the sandbox alone", line)
               for line in lines)
    assert any(re.match(r"spread: +over 2 repeats the pipeline took [\d.]+-[\d.]+ s and the sandbox alone [\d.]+-[\d.]+ s; "
                        r"each repeat's own ratio \d+\.\d\d-\d+\.\d\d$", line) for line in lines)
    assert (tmp_path / "run" / "trace.jsonl").stat().st_size > 0 and len(list((tmp_path / "run" / "results").iterdir())) == 4


def test_the_double_finds_the_task_of_prompts_whose_openings_look_alike():
    from agent.benchmarks.server_double import TaskFinder

    # Two tasks whose first rows are all background: their prompts open with the same digits.
    finder = TaskFinder({"a": ["0" * 300 + "123", "0" * 300], "b": ["0" * 300 + "456", "0" * 280]})
    prompt_a = "Example 1: " + "0" * 300 + "123 then " + "0" * 300
    prompt_b = "Example 1: " + "0" * 300 + "456 then " + "0" * 280
    for _ in range(2):  # the second time round, each opening has a task remembered for it
        assert finder.find(prompt_a) == "a"
        assert finder.find(prompt_b) == "b"
    assert finder.find("no grids here") is None


def test_the_limit_names_what_bounds_the_ratio():
    from agent.benchmarks.pipeline import limit_line

    # 1,000 programs; the sandbox alone took 1.5 s on 2 cores (3 core-ms each). The main process
    # spent 0.6 s, 0.2 s of it in the sandbox's trusted side (0.4 ms of its own per program), the
    # double 0.1 s: shared cores allow 3 / (3 + 0.4 + 0.1).
    line = limit_line(1000, 2, 1.5, 0.2, 0.6, 0.1)
    assert "3.00 core-ms" in line and "adds 0.40 ms" in line and "double 0.10 ms" in line
    assert f"the shared cores cap it at {3 / 3.5:.2f}" in line
    # Sixteen cores: the same sandbox work takes 0.25 s, and one core for the main process
    # (0.6 s of CPU) is the tighter bound: 0.25 / 0.6.
    line = limit_line(1000, 16, 0.25, 0.2, 0.6, 0.1)
    assert f"the main process, at one core, caps it at {0.25 / 0.6:.2f}" in line
    # One sandbox worker on 2 cores: the agent's work has a core of its own to run on, and
    # the 3 ms of sandbox work plus 0.5 ms more over both cores leave the sandbox's pace.
    line = limit_line(1000, 2, 3.0, 0.2, 0.6, 0.1, workers=1)
    assert "3.00 core-ms per program of the mix on 1 of 2 cores" in line
    assert f"neither the shared cores ({6 / 3.5:.2f})" in line and "1.00" in line


def test_the_spread_pairs_each_pipeline_run_with_the_sandbox_run_after_it():
    from agent.benchmarks.pipeline import spread_line

    # Repeat 1: 2.8 s alone after 4.0 s of pipeline (0.70); repeat 2: 3.0 after 3.5 (0.86). The
    # best of each side alone would give 2.8 / 3.5 = 0.80, a pairing no repeat measured.
    line = spread_line([4.0, 3.5], [2.8, 3.0])
    assert line.startswith("spread:") and line.split(":", 1)[1].strip() == (
        "over 2 repeats the pipeline took 3.50-4.00 s and the sandbox alone 2.80-3.00 s; each repeat's own ratio 0.70-0.86")


def test_idle_share_is_the_unused_part_of_the_cores_time():
    from agent.benchmarks.pipeline import core_ticks, idle_share

    # 100 ticks passed on all cores together, 5 of them idle.
    assert idle_share((10, 1000), (15, 1100)) == 0.05
    # No reading (no /proc/stat), or no tick in between: nothing to say.
    assert idle_share(None, (15, 1100)) is None and idle_share((10, 1000), (10, 1000)) is None
    idle, every = core_ticks()  # Linux, as CI is
    assert 0 <= idle <= every


def test_each_repeat_starts_with_nothing_remembered(monkeypatch, capsys):
    # Repeats answer the same requests; what one remembered would flatter the next.
    import arcsynth.memo
    from agent import program
    from agent.benchmarks.pipeline import main

    real_clear = arcsynth.memo.clear_all
    seen: list[tuple[int, int]] = []

    def clear_and_note() -> None:
        before = len(program._RECENT_EXTRACTIONS)
        real_clear()
        seen.append((before, len(program._RECENT_EXTRACTIONS)))

    monkeypatch.setattr(arcsynth.memo, "clear_all", clear_and_note)
    main(tasks=2, rounds=1, prompts=1, samples=4, concurrency=2, repeat=2)
    assert len(seen) == 2 and seen[1][0] > 0 and seen[0][1] == seen[1][1] == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("pipeline/sandbox ")
