"""Join the shard runs of one selection (``arcsynth solve --shard K/N``) into one run directory.

A selection run as N jobs (a Slurm array, N machines) leaves N run directories, each
with ``data.shard = "K/N"`` in its config. :func:`merge_runs` checks that they are the
N shards of one run (the same config apart from ``data.shard``, the same task
selection, every K from 0 to N-1 once, no task in two of them) and writes one run
directory as a one-process run would have: the config without ``data.shard``, the
shard traces one after the other, every result and passing program, and summary and
submission rebuilt over the whole selection, so the score is the one-process score.
The merged run can be resumed (``arcsynth solve --resume``) to finish tasks a shard
left undone, and opened with ``arcsynth view`` / ``show``.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.rundir import PROGRAMS, RESULTS, RunDir, RunDirError, _first_difference, task_file_name

__all__ = ["MergeError", "MergeOutcome", "ShardRun", "check_shards", "merge_runs"]


class MergeError(ValueError):
    """The run directories cannot be merged; the message names them and says why."""


@dataclass
class ShardRun:
    """One shard run directory, read for merging."""

    rd: RunDir
    cfg: Any
    k: int
    n: int
    results: dict[str, dict[str, Any]]
    provenance: dict[str, Any]
    summary: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.rd.path

    @property
    def shard(self) -> str:
        return f"{self.k}/{self.n}"


@dataclass
class MergeOutcome:
    run_dir: Path
    summary: dict[str, Any]
    undone: list[str] = field(default_factory=list)
    """Tasks of the selection with no finished result (a resume of the merged run does them)."""


def _unsharded(cfg: Any) -> Any:
    out = cfg.model_copy(deep=True)
    out.data.shard = None
    return out


def _read_shard(path: Path) -> ShardRun:
    from agent.config import ConfigError, load_config, parse_shard

    try:
        rd = RunDir.open_existing(path)
        cfg = load_config(rd.config_path)
        results = rd.read_results()
        prov = rd.read_json("provenance.json") or {}
        summary = rd.read_json("summary.json") or {}
    except (RunDirError, ConfigError) as e:
        raise MergeError(str(e)) from None
    if cfg.data.shard is None:
        raise MergeError(
            f"{path} is not a shard run (its config.toml has no data.shard); merge joins the run directories "
            f"of one selection solved with --shard K/N"
        )
    k, n = parse_shard(cfg.data.shard)
    return ShardRun(rd=rd, cfg=cfg, k=k, n=n, results=results, provenance=prov if isinstance(prov, dict) else {},
                    summary=summary if isinstance(summary, dict) else {})


def check_shards(paths: list[Path]) -> tuple[list[ShardRun], Any, Any, list[Any]]:
    """Read and check the shard runs; (shards in shard order, merged config, dataset, whole selection).

    Raises :class:`MergeError` naming the run directories at fault.
    """
    from agent.config import config_hash, hashed_fields
    from arcsynth.cli.solve import SolveFailure, select_run_tasks
    from arcsynth.datasets import shard_tasks, tasks_digest

    if not paths:
        raise MergeError("give the run directories of the shards to merge")
    seen: dict[Path, Path] = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            raise MergeError(f"{p} is given twice" + (f" (as {seen[key]})" if str(seen[key]) != str(p) else ""))
        seen[key] = Path(p)
    shards = [_read_shard(Path(p)) for p in paths]

    first = shards[0]
    for s in shards[1:]:
        if s.n != first.n:
            raise MergeError(f"{first.path} is shard {first.shard} but {s.path} is shard {s.shard}: "
                             f"the shards of one run all have the same N")
    base = _unsharded(first.cfg)
    base_hash = config_hash(base)
    for s in shards[1:]:
        other = _unsharded(s.cfg)
        if config_hash(other) != base_hash:
            where = _first_difference(hashed_fields(base), hashed_fields(other))
            raise MergeError(f"{first.path} and {s.path} were run with different configs (config.toml differs at "
                             f"{where}); only shards of one config can be merged")
    by_k: dict[int, ShardRun] = {}
    for s in shards:
        if s.k in by_k:
            raise MergeError(f"{by_k[s.k].path} and {s.path} are both shard {s.shard}")
        by_k[s.k] = s
    missing = [f"{k}/{first.n}" for k in range(first.n) if k not in by_k]
    if missing:
        raise MergeError(f"shard(s) {', '.join(missing)} missing: give the run directories of all {first.n} shards "
                         f"(got {', '.join(s.shard for s in shards)})")
    shards = [by_k[k] for k in range(first.n)]

    owner: dict[str, ShardRun] = {}
    for s in shards:
        for tid in s.results:
            if tid in owner:
                raise MergeError(f"task {tid} has a result in both {owner[tid].path} and {s.path}; "
                                 f"the shards of one run share no task")
            owner[tid] = s

    try:
        dataset, whole = select_run_tasks(base)
    except SolveFailure as e:
        raise MergeError(f"cannot load the tasks the shards were selected from ({e})") from None
    whole_digest = tasks_digest(whole)
    for s in shards:
        data = s.provenance.get("data") if isinstance(s.provenance.get("data"), dict) else {}
        recorded = data.get("selected_sha256")
        if recorded is not None and recorded != whole_digest:
            raise MergeError(f"{s.path} was run on other task data than {base.data.dataset} holds now "
                             f"(selection digest {recorded[:12]} vs {whole_digest[:12]}); merge where the shards' data is")
        mine = {t.id for t in shard_tasks(whole, s.k, s.n)}
        foreign = sorted(set(s.results) - mine)
        if foreign:
            raise MergeError(f"{s.path} has results for task(s) not in its shard {s.shard}: {', '.join(foreign[:5])}"
                             + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""))
    return shards, base, dataset, whole


def _copy_trace(src: Path, dst_fd: int) -> None:
    """Append ``src`` to the open trace; a torn last line is ended so the next shard starts on its own line."""
    if not src.is_file():
        return
    last = b"\n"
    with open(src, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst_fd, view):]
            last = chunk[-1:]
    if last != b"\n":
        os.write(dst_fd, b"\n")


def merge_runs(paths: list[Path], out: Path, *, argv: list[str]) -> MergeOutcome:
    """Check ``paths`` are the shards of one run and write the merged run directory ``out``."""
    import arcsynth
    from agent.config import config_hash, config_to_toml
    from agent.rundir import Recorder
    from agent.trace import RunEnd, RunStart
    from arcsynth.cli.solve import build_summary
    from arcsynth.datasets import data_provenance

    shards, cfg, dataset, whole = check_shards(paths)
    chash = config_hash(cfg)
    rd = RunDir.create(out)
    rd.write_config(config_to_toml(cfg))
    sources = [{"path": str(s.path), "shard": s.shard} for s in shards]
    rd.write_json("args.json", {"argv": list(argv), "cwd": os.getcwd(), "merged_from": sources})
    rd.write_json("provenance.json", {
        "arcsynth_version": arcsynth.__version__,
        "config_hash": chash,
        "seed": cfg.seed,
        "argv": list(argv),
        "started_at": datetime.now(timezone.utc).isoformat(),
        "resumed": False,
        "data": data_provenance(dataset, whole),
        # Each shard's own record (model, packages, sandbox layers, host) as it was written.
        "merged_from": [{**src, "provenance": s.provenance} for src, s in zip(sources, shards)],
    })

    fd = os.open(rd.trace_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for s in shards:
            _copy_trace(s.rd.trace_path, fd)
    finally:
        os.close(fd)
    for s in shards:
        for tid in s.results:
            name = task_file_name(tid)
            rd.write_text(f"{RESULTS}/{name}", (s.path / RESULTS / name).read_text(encoding="utf-8"))
            programs = s.path / PROGRAMS / name[: -len(".json")]
            if programs.is_dir():
                shutil.copytree(programs, rd.path / PROGRAMS / programs.name, dirs_exist_ok=True)

    summary = build_summary(rd, whole, dataset.name)
    summary.update({
        "config_hash": chash,
        "session_wall_s": max((float(s.summary.get("session_wall_s") or 0.0) for s in shards), default=0.0),
        "session_programs": sum(int(s.summary.get("session_programs") or 0) for s in shards),
        "session_completion_tokens": sum(int(s.summary.get("session_completion_tokens") or 0) for s in shards),
        "session_completion_tokens_per_s": None,
        "sandbox_stats": None,
        "runner": None,
        "merged_from": [{**src, "tasks_done": len(s.results), "session_wall_s": s.summary.get("session_wall_s")}
                        for src, s in zip(sources, shards)],
    })
    rd.write_summary(summary)
    rd.write_submission([t.id for t in whole])
    # A session of the merged run over the whole selection: the viewer's header takes the
    # task list and config hash from the last one, which would otherwise be the last shard's.
    with Recorder(rd) as recorder:
        recorder.emit(RunStart(run_id=rd.run_id, config_hash=chash, resumed=False, task_ids=[t.id for t in whole],
                               pid=os.getpid(), host=socket.gethostname()))
        recorder.emit(RunEnd(summary=summary))
    done = rd.done_task_ids()
    return MergeOutcome(rd.path, summary, undone=[t.id for t in whole if t.id not in done])

