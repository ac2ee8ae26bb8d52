"""Re-run a recorded run against its recorded completions and check it reproduces.

The recorded config is used with the model swapped for the replay backend, which
serves each request the completions the model gave in the recorded run (and stops
with an error if a prompt differs). Programs, verdicts, attempts and scores must come
out identical; the differences found are printed and make the exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from arcsynth.cli.common import fail, stdout_console
from arcsynth.cli.solve import SolveFailure, execute_run, select_run_tasks

EXIT_DIFFERENT = 1


def replay_config(source: Path) -> Any:
    """The recorded run's config with ``model`` switched to replaying ``source``."""
    from agent.config import load_config, parse_config
    from agent.rundir import RunDir

    rd = RunDir.open_existing(source)
    cfg = load_config(rd.config_path)
    tree = cfg.model_dump(mode="json")
    # Keep the recorded model table for the record; only the backend and its source change.
    tree["model"]["backend"] = "replay"
    tree["model"]["replay_dir"] = str(source)
    if tree["prompt"].get("offer_scipy") is None:
        # A run recorded before its config said so: the prompts offered scipy exactly
        # when it was installed then, which its provenance lists.
        tree["prompt"]["offer_scipy"] = "scipy" in (_recorded_packages(rd) or {})
    return parse_config(tree, source=str(rd.config_path))


def _recorded_packages(rd: Any) -> dict | None:
    import json

    try:
        return json.loads((rd.path / "provenance.json").read_text(encoding="utf-8")).get("packages")
    except (OSError, ValueError, AttributeError):
        return None


def run_replay(source: Path, out: Optional[Path], *, argv: list[str], live: bool, console: Any) -> list[str]:
    """Replay ``source`` into ``out``; the differences between the two runs."""
    import asyncio

    from agent.config import ConfigError, config_to_toml
    from agent.rundir import RecordError, RunDir, RunDirError, compare_runs, default_run_dir

    try:
        cfg = replay_config(source)
    except (ConfigError, RunDirError) as e:
        raise SolveFailure(str(e)) from None
    dataset, tasks = select_run_tasks(cfg)
    try:
        rd = RunDir.create(out if out is not None else default_run_dir(cfg.out_root, f"{cfg.name}-replay"))
        rd.write_config(config_to_toml(cfg))
        rd.write_args(argv)
    except RunDirError as e:
        raise SolveFailure(str(e)) from None
    console.print(escape(f"replaying {source} into {rd.path} ({len(tasks)} tasks)"))
    try:
        asyncio.run(execute_run(cfg, rd, tasks, argv=argv, resumed=False, dataset_name=dataset.name, live=live))
    except RecordError as e:
        raise SolveFailure(str(e), code=3) from None
    return compare_runs(source, rd.path)


def replay(
    run_dir: Path = typer.Argument(..., help="A run directory written by `arcsynth solve`.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="New run directory for the replay. Default: OUT_ROOT/NAME-replay-YYYYmmdd-HHMMSS."),
) -> None:
    """Re-run a recorded run on its recorded completions; report any difference in results."""
    console = stdout_console()
    try:
        diffs = run_replay(run_dir, out, argv=list(sys.argv), live=sys.stdout.isatty(), console=console)
    except SolveFailure as e:
        fail(str(e), code=e.code)
    if diffs:
        console.print(f"[bold red]the replay differs from {escape(str(run_dir))} in {len(diffs)} place(s):[/]")
        for d in diffs[:50]:
            console.print(escape(f"  - {d}"))
        if len(diffs) > 50:
            console.print(f"  ... and {len(diffs) - 50} more")
        raise typer.Exit(EXIT_DIFFERENT)
    console.print(escape(f"replay identical to {run_dir}: programs, verdicts, attempts and scores match"))
