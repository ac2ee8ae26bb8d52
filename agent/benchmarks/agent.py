"""Benchmark: does the agent keep the model as busy as calling it directly?

One process, the in-process transformers backend (SmolLM2 by default, on CPU):

1. raw, part 1: the agent's round-0 requests (built the same way, same seeds)
   go straight to ``backend.generate``, one after another, at batch size ``n``;
2. the agent solves a few small ARC tasks (two rounds: fresh samples, then
   refinements) with verification in the real sandbox; its throughput is the
   completion tokens generated divided by the wall time of the whole run;
3. raw, part 2: the agent's later requests (messages, sampling, seeds from its
   trace) go straight to the backend the same way.

The seeds make raw and agent generate the very same tokens, so the ratio of
throughputs measures only what the agent adds: prompt building, verification,
bookkeeping, and any time the model waits.

The last line printed is ``agent/raw <ratio>``; the target is at least 0.9.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from agent.backends import ModelConfig
from agent.backends.base import Message, SamplingParams
from agent.config import BudgetConfig, PromptConfig, RunConfig, SamplingConfig
from agent.runner import run_tasks
from agent.seeds import derive_seed
from agent.trace import PromptEvent
from arcsynth.datasets import load_dataset
from arcsynth.task import Task
from prompts import build_first_prompt


class EventLog:
    """A recorder that keeps the trace in memory (the benchmark writes no run directory)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def small_tasks(count: int, dataset: str = "arc1:train") -> list[Task]:
    """The ``count`` tasks with the fewest cells: short prompts, quick to benchmark."""
    tasks = list(load_dataset(dataset))
    size = lambda t: sum(p.input.size + (p.output.size if p.output is not None else 0) for p in (*t.train, *t.test))
    return sorted(tasks, key=lambda t: (size(t), t.id))[:count]


async def _bench(
    tasks: int, samples: int, max_tokens: int, concurrency: int, model: str, device: str, threads: int | None
) -> tuple[dict, dict]:
    from agent.backends.hf_local import TransformersBackend
    from sandbox import Sandbox

    config = RunConfig(
        seed=0,
        concurrency=concurrency,
        model=ModelConfig(backend="transformers", model=model, device=device, threads=threads),
        sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_tokens=max_tokens, samples_per_prompt=samples),
        prompt=PromptConfig(max_prompt_tokens=4000),
        budget=BudgetConfig(rounds=2, first_prompts=1, refine_prompts=1, stop_after_passing=None),
    )
    chosen = small_tasks(tasks)
    backend = TransformersBackend(model, device=device, threads=threads)
    t0 = time.perf_counter()
    await backend.start()
    print(
        f"model {model} loaded in {time.perf_counter() - t0:.1f} s ({threads or 'all'} torch threads); "
        f"tasks {', '.join(t.id for t in chosen)}"
    )
    try:
        # One short call first, so neither measurement pays for lazy initialisation.
        warm = [Message(role="user", content="Write a Python function that returns 1.")]
        await backend.generate(warm, SamplingParams(n=samples, max_tokens=8, seed=1), "bench/warmup")

        # Raw, part 1: the round-0 requests, built exactly as the agent builds them.
        first = [_first_request(t, config, backend) for t in chosen]
        before = await _replay(backend, first)

        log = EventLog()
        async with Sandbox(config.sandbox) as sandbox:
            started = time.perf_counter()
            summary = await run_tasks(chosen, config, backend, sandbox, log)
            agent_wall = time.perf_counter() - started
            sandbox_stats = sandbox.stats
        prompts = [e for e in log.events if isinstance(e, PromptEvent)]
        as_sent = {e.request_id: ([Message(**m) for m in e.messages], SamplingParams(**e.sampling)) for e in prompts}
        if any(as_sent.get(rid) != (m, p) for rid, m, p in first):
            raise RuntimeError("the agent's round-0 requests differ from the ones replayed: the comparison would be unfair")

        # Raw, part 2: every later request, replayed from the trace. Splitting the raw
        # run around the agent's evens out drift in the machine's speed (other load).
        later = [(e.request_id, *as_sent[e.request_id]) for e in prompts if e.round > 0]
        after = await _replay(backend, later)
        raw_tokens, raw_wall = before[0] + after[0], before[1] + after[1]
        programs = [e for e in log.events if e.event == "program"]
        agent = {
            "tokens": summary.completion_tokens,
            "wall_s": agent_wall,
            "tokens_per_s": summary.completion_tokens / agent_wall,
            "programs": summary.n_programs,
            "extracted": sum(p.status == "ok" for p in programs),
            "verified": sum(e.event == "verdict" for e in log.events),
            "requests": len(prompts),
            "sandbox": sandbox_stats,
        }
        raw = {
            "tokens": raw_tokens, "wall_s": raw_wall, "tokens_per_s": raw_tokens / raw_wall if raw_wall else 0.0,
            "parts": [t / w if w else 0.0 for t, w in (before, after)],
        }
        return agent, raw
    finally:
        await backend.close()


def _first_request(task: Task, config: RunConfig, backend: Any) -> tuple[str, list[Message], SamplingParams]:
    """The agent's request r0/q0 for ``task`` (canonical pair order, seed from the run seed)."""
    p, s = config.prompt, config.sampling
    prompt = build_first_prompt(
        task, encoding=p.encoding, max_prompt_tokens=p.max_prompt_tokens, count_tokens=backend.count_tokens,
        templates_dir=p.templates_dir, shuffle_seed=None, show_test_inputs=p.show_test_inputs,
    )
    params = SamplingParams(
        n=s.samples_per_prompt, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
        max_tokens=s.max_tokens, seed=derive_seed(config.seed, task.id, 0, 0), stop=list(s.stop),
    )
    return f"{task.id}/r0/q0", prompt.messages, params


async def _replay(backend: Any, requests: list[tuple[str, list[Message], SamplingParams]]) -> tuple[int, float]:
    """Send ``requests`` straight to the backend one after another: (completion tokens, seconds)."""
    tokens, wall = 0, 0.0
    for request_id, messages, params in requests:
        started = time.perf_counter()
        out = await backend.generate(messages, params, f"raw/{request_id}")
        wall += time.perf_counter() - started
        tokens += sum(c.completion_tokens for c in out)
    return tokens, wall


def main(
    tasks: int = 3,
    samples: int = 4,
    max_tokens: int = 96,
    concurrency: int = 3,
    model: str = "smollm2",
    device: str = "cpu",
    threads: int | None = None,
) -> float:
    """Run the benchmark, print both throughputs, and return agent/raw (printed last).

    ``threads``: torch threads on CPU; by default all cores but one, which is left
    to the sandbox and the event loop (the agent verifies while the model writes;
    on a small machine, torch threads that must share a core with the sandbox
    wait on each other and generation slows down several times over).
    """
    if threads is None and device == "cpu":
        from agent.backends.hf_local import threads_beside_sandbox

        threads = threads_beside_sandbox()
    agent, raw = asyncio.run(_bench(tasks, samples, max_tokens, concurrency, model, device, threads))
    print(
        f"raw generate:   {raw['tokens']} tokens in {raw['wall_s']:.1f} s = {raw['tokens_per_s']:.1f} tokens/s "
        f"(batch n={samples}, same {agent['requests']} requests, one at a time; "
        f"{raw['parts'][0]:.1f} tokens/s before the agent, {raw['parts'][1]:.1f} after)"
    )
    print(
        f"agent end-to-end: {agent['tokens']} tokens in {agent['wall_s']:.1f} s = {agent['tokens_per_s']:.1f} tokens/s "
        f"({tasks} tasks, {agent['requests']} requests, {agent['programs']} programs, {agent['extracted']} extracted, "
        f"{agent['verified']} verified in the sandbox, {agent['sandbox'].get('workers', '?')} workers)"
    )
    ratio = agent["tokens_per_s"] / raw["tokens_per_s"] if raw["tokens_per_s"] else 0.0
    print(f"agent/raw {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
