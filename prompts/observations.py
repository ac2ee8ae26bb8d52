"""Facts counted from a task's example pairs, stated in the prompt for small models.

A 0.5B model rarely sees for itself which cells an example changes; told "every cell of
colour 7 becomes 5 (17 cells)" it writes the replacement. The wording matters to such a
model: stated as "Cells whose colour differs between input and output: 7 -> 5 (17 cells,
every cell of colour 7)" it mostly echoed "differs" into programs that compare cells, and
passed in 4 of 216 samples on two recolouring tasks, against 15 of 48 in plain words.

These are observations of the shown examples only (sizes, which colours change into
which), never a guess at the rule and never anything from the test outputs: the model
still has to find the rule and the program. Off by default (``prompt.observations``);
the quickstart turns it on.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from arcsynth.task import Task

# More colour changes than this are listed as a count: a long list (a flip moves every
# colour everywhere) is noise to a small model.
MAX_CHANGES_LISTED = 6


def observations(task: Task, shown: Sequence[int]) -> list[str]:
    """Sentences about the train pairs ``shown`` (indices): sizes, and for same-size pairs the colour changes."""
    pairs = [(np.asarray(task.train[i].input), np.asarray(task.train[i].output)) for i in shown]
    pairs = [(a, b) for a, b in pairs if b is not None and b.ndim == 2]
    if not pairs:
        return []
    if all(a.shape == b.shape for a, b in pairs):
        return ["Each output grid has the same size as its input grid.", *_colour_changes(pairs)]
    if all(b.shape == a.shape[::-1] for a, b in pairs):
        return ["Each output grid's height is its input's width, and its width the input's height."]
    ratios = {(b.shape[0] / a.shape[0], b.shape[1] / a.shape[1]) for a, b in pairs}
    if len(ratios) == 1:
        ((ry, rx),) = ratios
        return [f"Each output grid is {ry:g} times as tall and {rx:g} times as wide as its input grid."]
    sizes = {b.shape for _, b in pairs}
    if len(sizes) == 1:
        ((h, w),) = sizes
        return [f"Every output grid is {h}x{w}, whatever the input's size."]
    return []


def _colour_changes(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    changed: Counter[tuple[int, int]] = Counter()
    kept: Counter[int] = Counter()
    for a, b in pairs:
        diff = a != b
        changed.update(zip(a[diff].tolist(), b[diff].tolist()))
        kept.update(a[~diff].tolist())
    if not changed:
        return ["Every output grid equals its input grid."]
    n_changed = sum(changed.values())
    n_kept = sum(kept.values())
    if len(changed) > MAX_CHANGES_LISTED:
        return [f"{_cells(n_changed)} change colour between input and output, in {len(changed)} different ways; {_kept(n_kept)}."]
    targets = Counter(a for a, _ in changed)
    parts = []
    for (a, b), n in changed.most_common():
        # "Every cell of colour a" only where all of them become b: the replacement is then the whole story.
        if kept[a] == 0 and targets[a] == 1:
            parts.append(f"every cell of colour {a} becomes {b} ({_cells(n)})")
        else:
            parts.append(f"{_cells(n)} of colour {a} become{'s' if n == 1 else ''} {b}")
    return [
        "Colour changes from input to output, over all examples: " + "; ".join(parts) + ".",
        f"{_kept(n_kept)}.",
    ]


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _kept(n: int) -> str:
    return "1 cell keeps its colour" if n == 1 else f"{n} cells keep their colour"
