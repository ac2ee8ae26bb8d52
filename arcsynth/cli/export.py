"""`arcsynth export RUN_DIR... --hindsight OUT.jsonl`: fine-tuning records from runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from arcsynth.cli.common import fail


def export(
    runs: list[Path] = typer.Argument(..., help="Run directories written by `arcsynth solve`."),
    hindsight: Path = typer.Option(..., "--hindsight", help="Write chat-format fine-tuning records (JSON lines, the TRL/Unsloth `messages` convention) here."),
) -> None:
    """Export every verified program as a fine-tuning record: solved tasks as they are, other
    programs relabelled onto the outputs they compute (crashes, timeouts and the identity are
    dropped; one program per behaviour and task)."""
    from agent.config import ConfigError
    from agent.hindsight import HindsightError, hindsight_records

    counts = {"solved": 0, "relabelled": 0}
    tmp = hindsight.with_name(f".{hindsight.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for run in runs:
                for record in hindsight_records(run):
                    out.write(json.dumps(record) + "\n")
                    counts[record["kind"]] += 1
        os.replace(tmp, hindsight)  # a failed export leaves no half-written file
    except (HindsightError, ConfigError, OSError) as e:
        tmp.unlink(missing_ok=True)
        fail(str(e))
    typer.echo(f"{hindsight}: {counts['solved'] + counts['relabelled']} records "
               f"({counts['solved']} solved, {counts['relabelled']} relabelled) from {len(runs)} run(s)")
