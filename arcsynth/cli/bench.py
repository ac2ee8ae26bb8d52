"""Benchmarks that print figures: side-by-side ratios measured in one run."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Measure throughput; the last line printed is the headline ratio.")


@app.command("sandbox")
def sandbox_bench(
    n: int = typer.Option(600, "--n", help="Candidates per design on the mix (the subprocess design runs fewer)."),
    workers: int = typer.Option(0, "--workers", help="Worker processes for every design; 0 = one per core."),
    seed: int = typer.Option(0, "--seed", help="Seed of the program mix."),
) -> None:
    """Unprotected exec vs one subprocess per candidate vs the arcsynth sandbox."""
    from sandbox.bench import main

    main(n=n, workers=workers, seed=seed)


@app.command("agent")
def agent_bench(
    tasks: int = typer.Option(3, "--tasks", help="ARC tasks solved end to end."),
) -> None:
    """Raw transformers generate tokens/s vs the agent's end-to-end tokens/s (SmolLM2, CPU)."""
    from agent.bench import main

    main(tasks=tasks)
