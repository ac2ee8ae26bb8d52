"""A library of solved programs, offered as worked examples in the first prompts of new tasks.

``arcsynth export RUN_DIR... --library OUT.jsonl`` writes one record per task that some
program solved (passed every train pair): the task's train pairs and that program (the
shortest passing one; one spelling of a rule is enough). ``prompt.library = PATH`` then
shows the ``prompt.library_k`` nearest records to each first prompt (Pang's idea: solved
programs as examples for new tasks).

**Similarity.** A task's signature is a vector of 26 numbers computed from its train pairs:

- the colour histogram of the train inputs (10 fractions of cells, colour 0 to 9),
- the colour histogram of the train outputs (10),
- the fraction of pairs whose output has the input's shape,
- the fraction of cells that change, over the pairs of equal shape,
- the mean of ``log2(output cells / input cells)``, clipped to [-4, 4] and divided by 4,
- the fraction of pairs whose output is smaller, and of those whose output is larger,
- the mean number of distinct colours in outputs minus inputs, divided by 10.

Two tasks are as similar as the cosine of their signatures. A record whose train
inputs are the task's own is never offered (it would show the answer).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from arcsynth.task import Task, TaskFormatError, task_from_json


class LibraryError(ValueError):
    """A library file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class LibraryEntry:
    """A solved task and a program that solves it."""

    task: Task
    source: str
    program_id: str = ""


def signature(task: Task) -> np.ndarray:
    """The 26-number signature described in the module docstring."""
    pairs = [p for p in task.train if p.output is not None]
    hist_in = np.zeros(10)
    hist_out = np.zeros(10)
    same, changed, equal_cells, log_ratio, smaller, larger, colours = 0, 0, 0, 0.0, 0, 0, 0.0
    for p in pairs:
        hist_in += np.bincount(p.input.ravel(), minlength=10)[:10]
        hist_out += np.bincount(p.output.ravel(), minlength=10)[:10]
        if p.input.shape == p.output.shape:
            same += 1
            changed += int(np.count_nonzero(p.input != p.output))
            equal_cells += p.input.size
        r = math.log2(p.output.size / p.input.size)
        log_ratio += max(-4.0, min(4.0, r)) / 4
        smaller += p.output.size < p.input.size
        larger += p.output.size > p.input.size
        colours += (len(np.unique(p.output)) - len(np.unique(p.input))) / 10
    n = max(len(pairs), 1)
    rest = [same / n, changed / equal_cells if equal_cells else 0.0, log_ratio / n, smaller / n, larger / n, colours / n]
    return np.concatenate([hist_in / max(hist_in.sum(), 1), hist_out / max(hist_out.sum(), 1), rest])


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na and nb else 0.0


def _same_inputs(a: Task, b: Task) -> bool:
    return len(a.train) == len(b.train) and all(
        x.input.shape == y.input.shape and np.array_equal(x.input, y.input) for x, y in zip(a.train, b.train)
    )


class Library:
    """Library records and their signatures, for nearest-neighbour look-ups."""

    def __init__(self, entries: list[LibraryEntry]):
        self.entries = entries
        self.signatures = [signature(e.task) for e in entries]

    def nearest(self, task: Task, k: int) -> list[LibraryEntry]:
        """The ``k`` records most similar to ``task`` (ties: file order), never the task itself."""
        if k <= 0 or not self.entries:
            return []
        sig = signature(task)
        scored = [(-similarity(sig, s), i) for i, s in enumerate(self.signatures) if not _same_inputs(self.entries[i].task, task)]
        return [self.entries[i] for _, i in sorted(scored)[:k]]


def library_record(task: Task, source: str, program_id: str) -> dict:
    """The JSON form of one library record (train pairs only: test answers are not needed)."""
    return {
        "task_id": task.id,
        "program_id": program_id,
        "source": source,
        "task": {"train": [{"input": p.input.tolist(), "output": p.output.tolist()} for p in task.train], "test": []},
    }


def read_library(path: str | Path) -> Library:
    """Read a library written by ``arcsynth export --library``; raises LibraryError naming the line."""
    return _read(str(Path(path).resolve()), Path(path).stat().st_mtime_ns if Path(path).exists() else 0)


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int) -> Library:
    entries = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise LibraryError(f"{path}: cannot read the library: {e.strerror or e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            obj["task"].setdefault("test", [])
            task = task_from_json({"train": obj["task"]["train"], "test": obj["task"]["test"] or [{"input": obj["task"]["train"][0]["input"]}]}, str(obj["task_id"]))
            source = obj["source"]
            if not isinstance(source, str) or not source.strip():
                raise ValueError("'source' must be a program")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, TaskFormatError) as e:
            raise LibraryError(f"{path}, line {n}: not a library record: {e}") from None
        entries.append(LibraryEntry(task, source, str(obj.get("program_id", ""))))
    return Library(entries)
