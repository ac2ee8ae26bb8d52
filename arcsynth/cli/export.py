"""`arcsynth export RUN_DIR... --hindsight OUT.jsonl --library LIB.jsonl`: what runs found, for reuse."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from arcsynth.cli.common import fail


def export(
    runs: list[Path] = typer.Argument(..., help="Run directories written by `arcsynth solve`."),
    hindsight: Optional[Path] = typer.Option(None, "--hindsight", help="Write chat-format fine-tuning records (JSON lines, the TRL/Unsloth `messages` convention) here."),
    library: Optional[Path] = typer.Option(None, "--library", help="Write the solved tasks with a program each (JSON lines) here, for `prompt.library`."),
) -> None:
    """Export what runs found. --hindsight: every verified program as a fine-tuning record, solved
    tasks as they are, other programs relabelled onto the outputs they compute (crashes, timeouts
    and the identity are dropped; one program per behaviour and task). --library: one record per
    solved task (its train pairs and its shortest passing program), offered to new tasks as worked
    examples by `prompt.library`."""
    from agent.config import ConfigError
    from agent.hindsight import HindsightError, hindsight_records, library_records

    if hindsight is None and library is None:
        fail("nothing to export: give --hindsight OUT.jsonl, --library OUT.jsonl or both")
    if hindsight is not None and library is not None and hindsight.resolve() == library.resolve():
        fail("--hindsight and --library name the same file")
    written: list[tuple[Path, str]] = []
    tmps: list[Path] = []
    try:
        for out, make, describe in (
            (hindsight, hindsight_records, _describe_hindsight),
            (library, library_records, lambda counts: f"{counts['records']} solved tasks"),
        ):
            if out is None:
                continue
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            tmps.append(tmp)
            counts = {"records": 0, "solved": 0, "relabelled": 0}
            with open(tmp, "w", encoding="utf-8") as f:
                for run in runs:
                    for record in make(run):
                        f.write(json.dumps(record) + "\n")
                        counts["records"] += 1
                        if "kind" in record:
                            counts[record["kind"]] += 1
            written.append((tmp, f"{out}: {describe(counts)} from {len(runs)} run(s)"))
        for (tmp, _), out in zip(written, [o for o in (hindsight, library) if o is not None]):
            os.replace(tmp, out)  # a failed export leaves no half-written file
    except (HindsightError, ConfigError, OSError) as e:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        fail(str(e))
    for _, line in written:
        typer.echo(line)


def _describe_hindsight(counts: dict[str, int]) -> str:
    return f"{counts['records']} records ({counts['solved']} solved, {counts['relabelled']} relabelled)"
