"""Benchmarks that print figures: side-by-side ratios measured in one run."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Measure throughput; the last line printed is the headline ratio.")


@app.command("sandbox")
def sandbox_bench(
    n: int = typer.Option(2000, "--n", min=1, help="Candidates per design on each synthetic mix (the subprocess design runs fewer)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Worker processes for every design; 0 = one per core."),
    seed: int = typer.Option(0, "--seed", help="Seed of the program mixes."),
    n_real: int = typer.Option(400, "--n-real", min=1, help="Programs per mix of real correct solvers (under 10 KB, 10-40 KB)."),
) -> None:
    """Unprotected exec vs one subprocess per candidate vs the arcsynth sandbox, on synthetic and real program mixes."""
    from sandbox.bench import main

    main(n=n, workers=workers, seed=seed, n_real=n_real)


@app.command("agent")
def agent_bench(
    tasks: int = typer.Option(3, "--tasks", min=1, help="ARC tasks (the smallest of arc1:train) solved end to end."),
    samples: int = typer.Option(4, "--samples", min=1, help="Completions per request (the batch size of each generate call)."),
    max_tokens: int = typer.Option(96, "--max-tokens", min=1, help="Tokens per completion; more lets more programs be complete enough to verify."),
    concurrency: int = typer.Option(3, "--concurrency", min=1, help="Tasks in flight in the agent."),
    threads: int = typer.Option(None, "--threads", min=1, help="Torch CPU threads (default: all cores but one)."),
    model: str = typer.Option("smollm2", "--model", help="An embedded model alias (smollm2, qwen2.5-coder-0.5b, ...), a local Hugging Face model folder or a hub id in the local cache."),
    device: str = typer.Option("cpu", "--device", help="Where the model runs: cpu, cuda, cuda:N, or auto (a GPU when there is one)."),
) -> None:
    """Raw transformers generate tokens/s vs the agent's end-to-end tokens/s (SmolLM2 on the CPU by default)."""
    from agent.backends import BackendError
    from agent.benchmarks.agent import main
    from arcsynth.cli.common import fail
    from sandbox import SandboxUnavailable

    try:
        main(tasks=tasks, samples=samples, max_tokens=max_tokens, concurrency=concurrency, threads=threads, model=model, device=device)
    except BackendError as e:
        fail(f"--model {model} --device {device}: {e}")
    except SandboxUnavailable as e:
        fail(f"sandbox: {e}")


@app.command("pipeline")
def pipeline_bench(
    tasks: int = typer.Option(40, "--tasks", min=1, help="Real ARC-AGI-1 training tasks solved (those the server double has a solution for come first)."),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Rounds per task: fresh samples, then refinements."),
    prompts: int = typer.Option(4, "--prompts", min=1, help="Prompts per task and round."),
    samples: int = typer.Option(8, "--samples", min=1, help="Completions per prompt (the n of each request)."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Tasks in flight in the agent."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="Delay of the server double before every answer (0: instant)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Sandbox worker processes; 0 = one per core."),
    seed: int = typer.Option(0, "--seed", help="Run seed (request seeds, and so the completions drawn)."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Pipeline and sandbox-alone runs, alternating; the fastest of each counts, and the spread of all is printed."),
    profile: Path = typer.Option(None, "--profile", help="Write a cProfile of the main process during the pipeline run here (slows it down)."),
    keep: Path = typer.Option(None, "--keep", help="Write the pipeline's run directory here and keep it (to look at with `arcsynth show`)."),
) -> None:
    """An instant OpenAI-compatible server double drives the real backend, loop, sandbox and trace: programs/s vs the sandbox alone."""
    from agent.benchmarks.pipeline import main

    main(tasks=tasks, rounds=rounds, prompts=prompts, samples=samples, concurrency=concurrency, latency_ms=latency_ms,
         workers=workers, seed=seed, repeat=repeat, profile=profile, keep=keep)


@app.command("viewer")
def viewer_bench(
    tasks: int = typer.Option(1000, "--tasks", min=1, help="Tasks in the synthetic run."),
    candidates: int = typer.Option(500_000, "--candidates", min=1, help="Candidate programs in the synthetic run, over all tasks."),
    quick: bool = typer.Option(False, "--quick", help="A small run for a quick check: 100 tasks, 20,000 candidates."),
    directory: Path = typer.Option(None, "--dir", help="Where to write the synthetic run (default: a temporary folder)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the synthetic run afterwards (to try `arcsynth show` on it)."),
) -> None:
    """Open a synthetic run (1,000 tasks, 500,000 candidates) through the run index: time and peak memory."""
    from viewer.bench import main

    if quick:
        tasks, candidates = 100, 20_000
    main(tasks=tasks, candidates=candidates, directory=directory, keep=keep)


@app.command("search")
def search_bench(
    strategy: list[str] = typer.Option(None, "--strategy", help="A strategy to run (repeat for several): rex, rex+pool, evolve, mix; default all."),
    tasks: int = typer.Option(32, "--tasks", min=1, help="Recolouring tasks (built on real ARC-AGI-1 training inputs)."),
    programs: int = typer.Option(64, "--programs", min=1, help="Programs per task at most (budget.max_programs)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the tasks and of every request."),
    p_know: float = typer.Option(0.25, "--p-know", min=0, max=1, help="Scripted model: chance a first guess gets a colour right."),
    p_fix: float = typer.Option(0.5, "--p-fix", min=0, max=1, help="Scripted model: chance it applies a correction a cell diff shows."),
    p_noise: float = typer.Option(0.1, "--p-noise", min=0, max=1, help="Scripted model: chance it miscopies an entry when refining."),
) -> None:
    """Solved tasks per 1,000 programs for each search strategy, side by side (scripted model, real sandbox)."""
    from agent.benchmarks.search import STRATEGIES, main

    unknown = [s for s in strategy or [] if s not in STRATEGIES]
    if unknown:
        from arcsynth.cli.common import fail

        fail(f"--strategy: unknown {', '.join(unknown)}; known: {', '.join(STRATEGIES)}")
    main(strategies=strategy or None, tasks=tasks, programs=programs, seed=seed, p_know=p_know, p_fix=p_fix, p_noise=p_noise)
