"""Grids: 2-D arrays of colours 0..9, 1..30 cells per side.

Every grid that enters arcsynth (task files, submissions, program outputs) goes
through :func:`parse_grid`, so the rest of the code can rely on a C-contiguous
``uint8`` array with a valid shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SIDE = 30
N_COLOURS = 10

Grid = np.ndarray
"""A 2-D ``uint8`` array, values 0..9, each side 1..30."""

# The official ARC palette (ARC-AGI web app), by colour index.
PALETTE = (
    "#000000",
    "#0074D9",
    "#FF4136",
    "#2ECC40",
    "#FFDC00",
    "#AAAAAA",
    "#F012BE",
    "#FF851B",
    "#7FDBFF",
    "#870C25",
)


_INT_TYPES = frozenset((int, np.int64, np.int32, np.uint8, np.int8, np.int16, np.uint16, np.uint32, np.uint64))


class GridError(ValueError):
    """A value is not a valid ARC grid; the message says why."""


def parse_grid(value: Any) -> Grid:
    """Validate a list of lists (or an array) and return it as a ``uint8`` grid.

    Strict on purpose: booleans, floats, strings and ragged rows are rejected
    rather than coerced, because a lenient parser would let a wrong answer pass.
    """
    if isinstance(value, np.ndarray):
        if value.ndim != 2:
            raise GridError(f"expected a 2-D grid, got an array with {value.ndim} dimension(s)")
        if value.dtype.kind not in "iu":
            raise GridError(f"expected integer cells, got dtype {value.dtype}")
        arr = value
    else:
        if not isinstance(value, (list, tuple)):
            raise GridError(f"expected a list of rows, got {type(value).__name__}")
        if not value:
            raise GridError("grid has no rows")
        width = None
        for r, row in enumerate(value):
            if not isinstance(row, (list, tuple)):
                raise GridError(f"row {r} is {type(row).__name__}, not a list")
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise GridError(f"grid is not rectangular: row 0 has {width} cells, row {r} has {len(row)}")
            # Exact type check (bool is an int subclass; True/False is not a colour), done
            # as a set test first because whole datasets are validated on every load.
            if not _INT_TYPES.issuperset(map(type, row)):
                for c, cell in enumerate(row):
                    if type(cell) not in _INT_TYPES:
                        raise GridError(f"cell ({r},{c}) is {type(cell).__name__} {cell!r}, not an integer")
        arr = np.array(value, dtype=np.int64)
    h, w = arr.shape
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise GridError(f"grid is {h}x{w}; each side must be 1..{MAX_SIDE}")
    if arr.size and (arr.min() < 0 or arr.max() >= N_COLOURS):
        bad = arr[(arr < 0) | (arr >= N_COLOURS)].flat[0]
        raise GridError(f"cell value {int(bad)} is outside 0..{N_COLOURS - 1}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def grid_to_list(grid: Grid) -> list[list[int]]:
    """A grid as plain nested lists (JSON, Kaggle submissions)."""
    return [[int(c) for c in row] for row in grid]


def grids_equal(a: Grid | None, b: Grid | None) -> bool:
    """Exact match, shape included (the ARC Prize criterion)."""
    if a is None or b is None:
        return False
    return a.shape == b.shape and bool(np.array_equal(a, b))


def shape_str(grid: Grid) -> str:
    h, w = grid.shape
    return f"{h}x{w}"
