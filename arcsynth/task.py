"""Tasks and pairs: the unit of work of ARC.

A task has train pairs (input and output known) and test pairs (output known only
for the public sets). Tasks are built from the official JSON format by
:func:`task_from_json`, which validates everything and names the exact place of
the first problem it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arcsynth.grid import Grid, GridError, grid_to_list, parse_grid


class TaskFormatError(ValueError):
    """A task file or entry is malformed. The message names source, task, pair and reason."""

    def __init__(self, reason: str, *, source: str | None = None, task_id: str | None = None, where: str | None = None):
        self.reason = reason
        self.source = source
        self.task_id = task_id
        self.where = where
        parts = []
        if source:
            parts.append(source)
        if task_id:
            parts.append(f"task {task_id}")
        if where:
            parts.append(where)
        super().__init__(": ".join([", ".join(parts), reason]) if parts else reason)


@dataclass(frozen=True)
class Pair:
    """One input grid and, when known, its output grid."""

    input: Grid
    output: Grid | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input": grid_to_list(self.input)}
        if self.output is not None:
            d["output"] = grid_to_list(self.output)
        return d


@dataclass(frozen=True)
class Task:
    """An ARC task: an id, train pairs (outputs known) and test pairs."""

    id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]

    @property
    def test_outputs_known(self) -> bool:
        return bool(self.test) and all(p.output is not None for p in self.test)

    def to_json(self) -> dict[str, Any]:
        return {"train": [p.to_json() for p in self.train], "test": [p.to_json() for p in self.test]}


def _parse_pairs(obj: Any, split: str, *, need_output: bool, source: str | None, task_id: str) -> tuple[Pair, ...]:
    if not isinstance(obj, list):
        raise TaskFormatError(f"'{split}' must be a list of pairs, got {type(obj).__name__}", source=source, task_id=task_id)
    pairs = []
    for i, raw in enumerate(obj):
        where = f"{split} pair {i}"
        if not isinstance(raw, dict):
            raise TaskFormatError(f"pair must be an object, got {type(raw).__name__}", source=source, task_id=task_id, where=where)
        if "input" not in raw:
            raise TaskFormatError("missing 'input'", source=source, task_id=task_id, where=where)
        if need_output and "output" not in raw:
            raise TaskFormatError("missing 'output'", source=source, task_id=task_id, where=where)
        try:
            inp = parse_grid(raw["input"])
        except GridError as e:
            raise TaskFormatError(f"input: {e}", source=source, task_id=task_id, where=where) from None
        out = None
        if raw.get("output") is not None:
            try:
                out = parse_grid(raw["output"])
            except GridError as e:
                raise TaskFormatError(f"output: {e}", source=source, task_id=task_id, where=where) from None
        pairs.append(Pair(inp, out))
    return tuple(pairs)


def task_from_json(obj: Any, task_id: str, *, source: str | None = None) -> Task:
    """Build a validated :class:`Task` from the official ``{"train": [...], "test": [...]}`` form."""
    if not isinstance(obj, dict):
        raise TaskFormatError(f"a task must be a JSON object, got {type(obj).__name__}", source=source, task_id=task_id)
    for key in ("train", "test"):
        if key not in obj:
            raise TaskFormatError(f"missing '{key}'", source=source, task_id=task_id)
    train = _parse_pairs(obj["train"], "train", need_output=True, source=source, task_id=task_id)
    if not train:
        raise TaskFormatError("a task needs at least one train pair", source=source, task_id=task_id)
    test = _parse_pairs(obj["test"], "test", need_output=False, source=source, task_id=task_id)
    if not test:
        raise TaskFormatError("a task needs at least one test input", source=source, task_id=task_id)
    return Task(id=task_id, train=train, test=test)
