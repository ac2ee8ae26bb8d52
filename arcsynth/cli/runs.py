"""`arcsynth runs [DIR]`: the run directories under DIR with status, dataset, model, score, programs, age."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from arcsynth.cli.common import fail


def find_run_dirs(root: Path) -> list[Path]:
    """Directories directly under ``root`` (or ``root`` itself) that hold a trace.jsonl or config.toml."""
    def is_run(p: Path) -> bool:
        return p.is_dir() and ((p / "trace.jsonl").is_file() or (p / "config.toml").is_file())

    if is_run(root):
        return [root]
    return sorted(p for p in root.iterdir() if is_run(p))


def runs(
    root: Path = typer.Argument(Path("runs"), help="A folder of run directories (default: runs/)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records instead of a table."),
) -> None:
    """List run directories: status, dataset, model, score, programs and age, oldest first.

    Each run's index (index.sqlite) is built the first time, which takes a while on a large run.
    """
    from arcsynth.cli.show import Out, fmt_duration
    from viewer.index import RunIndex, RunIndexError

    if not root.exists():
        fail(f"{root}: no such directory")
    if not root.is_dir():
        fail(f"{root} is not a directory")
    records = []
    for path in find_run_dirs(root):
        try:
            with RunIndex.open(path) as ix:
                h = ix.header()
        except RunIndexError as e:
            records.append({"run": path.name, "path": str(path), "error": str(e)})
            continue
        try:
            mtime = max((path / f).stat().st_mtime for f in ("trace.jsonl", "config.toml") if (path / f).exists())
        except ValueError:
            mtime = path.stat().st_mtime
        records.append({
            "run": path.name, "path": str(path), "status": h.status, "dataset": h.dataset, "backend": h.backend,
            "model": h.model, "tasks": h.tasks, "tasks_done": h.tasks_done, "solved": h.solved,
            "train_solved": h.train_solved, "score": h.score, "tasks_scored": h.tasks_scored, "programs": h.programs,
            "started_at": h.started_at, "last_write": mtime, "age_s": time.time() - mtime,
        })
    records.sort(key=lambda r: (r.get("started_at") or r.get("last_write") or 0, r["run"]))
    if as_json:
        typer.echo(json.dumps(records, indent=1))
        return
    if not records:
        typer.echo(f"no run directories in {root}")
        return
    out = Out(not sys.stdout.isatty())
    rows = []
    for r in records:
        if "error" in r:
            rows.append([r["run"], "unreadable", "-", "-", "-", "-", "-", r["error"][:80]])
            continue
        score = "-" if r["score"] is None else f"{r['score']:g}/{r['tasks_scored']}"
        rows.append([r["run"], r["status"], r["dataset"] or "-", r["model"] or "-", score,
                     f"{r['tasks_done']}/{r['tasks']}", str(r["programs"]), fmt_duration(r["age_s"]) + " ago"])
    out.table(f"runs in {root}", ["run", "status", "dataset", "model", "score", "tasks", "programs", "age"], rows)
