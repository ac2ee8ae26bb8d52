"""Benchmarks that print figures: side-by-side ratios measured in one run."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Measure throughput; the last line printed is the headline ratio.")


@app.command("sandbox")
def sandbox_bench(
    n: int = typer.Option(2000, "--n", help="Candidates per design on each synthetic mix (the subprocess design runs fewer)."),
    workers: int = typer.Option(0, "--workers", help="Worker processes for every design; 0 = one per core."),
    seed: int = typer.Option(0, "--seed", help="Seed of the program mixes."),
    n_real: int = typer.Option(400, "--n-real", help="Programs per mix of real correct solvers (under 10 KB, 10-40 KB)."),
) -> None:
    """Unprotected exec vs one subprocess per candidate vs the arcsynth sandbox, on synthetic and real program mixes."""
    from sandbox.bench import main

    main(n=n, workers=workers, seed=seed, n_real=n_real)


@app.command("agent")
def agent_bench(
    tasks: int = typer.Option(3, "--tasks", help="ARC tasks (the smallest of arc1:train) solved end to end."),
    samples: int = typer.Option(4, "--samples", help="Completions per request (the batch size of each generate call)."),
    max_tokens: int = typer.Option(96, "--max-tokens", help="Tokens per completion; more lets more programs be complete enough to verify."),
    concurrency: int = typer.Option(3, "--concurrency", help="Tasks in flight in the agent."),
    threads: int = typer.Option(None, "--threads", help="Torch CPU threads (default: all cores but one)."),
) -> None:
    """Raw transformers generate tokens/s vs the agent's end-to-end tokens/s (SmolLM2, CPU)."""
    from agent.bench import main

    main(tasks=tasks, samples=samples, max_tokens=max_tokens, concurrency=concurrency, threads=threads)


@app.command("viewer")
def viewer_bench(
    tasks: int = typer.Option(1000, "--tasks", help="Tasks in the synthetic run."),
    candidates: int = typer.Option(500_000, "--candidates", help="Candidate programs in the synthetic run, over all tasks."),
    quick: bool = typer.Option(False, "--quick", help="A small run for a quick check: 100 tasks, 20,000 candidates."),
    directory: Path = typer.Option(None, "--dir", help="Where to write the synthetic run (default: a temporary folder)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the synthetic run afterwards (to try `arcsynth show` on it)."),
) -> None:
    """Open a synthetic run (1,000 tasks, 500,000 candidates) through the run index: time and peak memory."""
    from viewer.bench import main

    if quick:
        tasks, candidates = 100, 20_000
    main(tasks=tasks, candidates=candidates, directory=directory, keep=keep)
