"""Benchmark: does the agent keep the model as busy as calling it directly?

One process, the in-process transformers backend (SmolLM2 by default, on CPU):

1. the agent solves a few small ARC tasks (two rounds: fresh samples, then
   refinements) with verification in the real sandbox; its throughput is the
   completion tokens generated divided by the wall time of the whole run;
2. the very same requests (messages, sampling parameters, seeds) taken from the
   run's prompt events are sent again straight to ``backend.generate``, one
   after another, at the same batch size ``n``: the raw throughput.

The last line printed is ``agent/raw <ratio>``; the target is at least 0.9.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.backends import ModelConfig, make_backend
from agent.backends.base import Message, SamplingParams
from agent.config import BudgetConfig, PromptConfig, RunConfig, SamplingConfig
from agent.runner import run_tasks
from agent.trace import PromptEvent
from arcsynth.datasets import load_dataset
from arcsynth.task import Task


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


async def _bench(tasks: int, samples: int, max_tokens: int, concurrency: int, model: str, device: str) -> tuple[dict, dict]:
    from sandbox import Sandbox

    config = RunConfig(
        seed=0,
        concurrency=concurrency,
        model=ModelConfig(backend="transformers", model=model, device=device),
        sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_tokens=max_tokens, samples_per_prompt=samples),
        prompt=PromptConfig(max_prompt_tokens=4000),
        budget=BudgetConfig(rounds=2, first_prompts=1, refine_prompts=1, stop_after_passing=None),
    )
    chosen = small_tasks(tasks)
    backend = make_backend(config.model)
    t0 = time.perf_counter()
    await backend.start()
    print(f"model {model} loaded in {time.perf_counter() - t0:.1f} s; tasks {', '.join(t.id for t in chosen)}")
    try:
        # One short call first, so neither measurement pays for lazy initialisation.
        warm = [Message(role="user", content="Write a Python function that returns 1.")]
        await backend.generate(warm, SamplingParams(n=samples, max_tokens=8, seed=1), "bench/warmup")

        log = EventLog()
        async with Sandbox(config.sandbox) as sandbox:
            started = time.perf_counter()
            summary = await run_tasks(chosen, config, backend, sandbox, log)
            agent_wall = time.perf_counter() - started
        agent = {
            "tokens": summary.completion_tokens,
            "wall_s": agent_wall,
            "tokens_per_s": summary.completion_tokens / agent_wall,
            "programs": summary.n_programs,
            "requests": sum(isinstance(e, PromptEvent) for e in log.events),
            "sandbox": summary.sandbox,
        }

        raw_tokens, raw_wall = 0, 0.0
        for e in log.events:
            if isinstance(e, PromptEvent):
                messages = [Message(**m) for m in e.messages]
                params = SamplingParams(**e.sampling)
                started = time.perf_counter()
                out = await backend.generate(messages, params, f"raw/{e.request_id}")
                raw_wall += time.perf_counter() - started
                raw_tokens += sum(c.completion_tokens for c in out)
        raw = {"tokens": raw_tokens, "wall_s": raw_wall, "tokens_per_s": raw_tokens / raw_wall if raw_wall else 0.0}
        return agent, raw
    finally:
        await backend.close()


def main(
    tasks: int = 3,
    samples: int = 4,
    max_tokens: int = 96,
    concurrency: int = 3,
    model: str = "smollm2",
    device: str = "cpu",
) -> float:
    """Run the benchmark, print both throughputs, and return agent/raw (printed last)."""
    agent, raw = asyncio.run(_bench(tasks, samples, max_tokens, concurrency, model, device))
    print(
        f"raw generate:   {raw['tokens']} tokens in {raw['wall_s']:.1f} s = {raw['tokens_per_s']:.1f} tokens/s "
        f"(batch n={samples}, same {agent['requests']} requests, one at a time)"
    )
    rate = agent["sandbox"].get("candidates_per_s") or agent["sandbox"].get("candidates/s")
    print(
        f"agent end-to-end: {agent['tokens']} tokens in {agent['wall_s']:.1f} s = {agent['tokens_per_s']:.1f} tokens/s "
        f"({tasks} tasks, {agent['programs']} programs verified or rejected"
        + (f", sandbox {rate:.0f} candidates/s" if isinstance(rate, (int, float)) else "")
        + ")"
    )
    ratio = agent["tokens_per_s"] / raw["tokens_per_s"] if raw["tokens_per_s"] else 0.0
    print(f"agent/raw {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
