"""Benchmark: solved tasks per 1,000 programs for each search strategy, side by side.

No model here solves ARC, so the strategies are compared on recolouring tasks built
from real ARC-AGI-1 inputs, written for by a scripted model (a TEST DOUBLE, see
:mod:`agent.benchmarks.recolour_model`) whose refinements improve on their parents when the
prompt shows the right failures in detail. Everything else is the real agent: the
same loop, prompts, real sandbox, voting and scoring against the hidden test outputs.

Every strategy gets the same tasks, the same per-task budget, the same stopping
rules and the same seeds; only ``search.strategy`` (and, for ``rex+pool``,
``prompt.parents_per_prompt``) differs. The figures measure search mechanics on
this simulated model, not what a real model would score.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agent.config import BudgetConfig, PromptConfig, RunConfig, SamplingConfig, parse_config
from agent.benchmarks.recolour_model import ScriptedRecolourBackend, recolour_tasks
from agent.runner import run_tasks

STRATEGIES: dict[str, list[str]] = {
    "rex": ["search.strategy=rex"],
    "rex+pool": ["search.strategy=rex", "search.strategy.pooling=true", "prompt.parents_per_prompt=3"],
    "evolve": ["search.strategy=evolve"],
    "mix": ["search.strategy=mix"],
}
"""The strategies compared, as config overrides of one base config."""


class EventLog:
    """A recorder that counts events (the benchmark writes no run directory)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.moves: Counter[str] = Counter()

    def emit(self, event: Any) -> None:
        self.counts[event.event] += 1
        if event.event == "parents":
            self.moves[event.move] += 1


@dataclass
class Row:
    strategy: str
    tasks: int
    solved: int = 0
    solved_train: int = 0
    programs: int = 0
    rejected: int = 0
    crossovers: int = 0
    wall_s: float = 0.0

    @property
    def per_1000(self) -> float:
        return 1000.0 * self.solved / self.programs if self.programs else 0.0


def base_config(programs: int, seed: int, concurrency: int) -> RunConfig:
    return RunConfig(
        seed=seed,
        concurrency=concurrency,
        sampling=SamplingConfig(samples_per_prompt=4, max_tokens=200),
        prompt=PromptConfig(max_prompt_tokens=8000, encoding="spaced", parents_per_prompt=1),
        budget=BudgetConfig(
            rounds=1000, first_prompts=2, refine_prompts=2, max_programs=programs,
            stop_after_passing=None, stop_on_agreement=2,
        ),
    )


async def _run(strategies: list[str], n_tasks: int, programs: int, seed: int, concurrency: int,
               model_options: dict[str, float]) -> list[Row]:
    from sandbox import Sandbox, SandboxConfig

    tasks = recolour_tasks(n_tasks, seed)
    rows = []
    async with Sandbox(SandboxConfig(pair_timeout_s=2.0, candidate_timeout_s=10.0)) as sandbox:
        for name in strategies:
            base = base_config(programs, seed, concurrency)
            cfg = parse_config(base.model_dump(mode="json"), STRATEGIES[name], source=f"strategy {name}")
            backend = ScriptedRecolourBackend(tasks, **model_options)
            log = EventLog()
            started = time.perf_counter()
            summary = await run_tasks([t.task for t in tasks], cfg, backend, sandbox, log)
            row = Row(name, len(tasks), wall_s=time.perf_counter() - started)
            outcomes = summary.outcomes
            row.solved = sum(1 for o in outcomes if o.score == 1.0)
            row.solved_train = sum(1 for o in outcomes if o.solved_train)
            row.programs = sum(o.n_programs for o in outcomes)
            row.rejected = log.counts["rejected"]
            row.crossovers = log.moves["crossover"]
            rows.append(row)
    return rows


def main(strategies: list[str] | None = None, tasks: int = 32, programs: int = 64, seed: int = 0, concurrency: int = 4,
         p_know: float = 0.25, p_fix: float = 0.5, p_noise: float = 0.1, p_crash: float = 0.1) -> list[Row]:
    """Run every strategy on the same tasks and print one row each; returns the rows."""
    from rich.console import Console
    from rich.table import Table

    names = strategies or list(STRATEGIES)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(unknown)}; known: {', '.join(STRATEGIES)}")
    options = dict(p_know=p_know, p_fix=p_fix, p_noise=p_noise, p_crash=p_crash)
    rows = asyncio.run(_run(names, tasks, programs, seed, concurrency, options))
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(
        f"{tasks} recolouring tasks on real ARC-AGI-1 inputs, at most {programs} programs per task, "
        f"stop when 2 passing programs agree; scripted model (test double) p_know={p_know} p_fix={p_fix} "
        f"p_noise={p_noise} p_crash={p_crash}; seed {seed}"
    )
    table = Table("strategy", "solved", "train-solved", "programs", "solved per 1k programs", "rejected", "crossovers", "wall s")
    for r in rows:
        table.add_row(r.strategy, f"{r.solved}/{r.tasks}", f"{r.solved_train}/{r.tasks}", str(r.programs),
                      f"{r.per_1000:.2f}", str(r.rejected), str(r.crossovers), f"{r.wall_s:.1f}")
    console.print(table)
    console.print("  ".join(f"{r.strategy} {r.per_1000:.2f}" for r in rows) + "   (solved tasks per 1,000 programs)")
    return rows
