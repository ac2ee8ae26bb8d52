"""Grid encodings: how a grid is written as text in a prompt.

Each published system settled on a different text form (spaced digits in
Poetiq, numpy repr in SOAR, colour words in BARC), and which one a model reads
best depends on the model and its tokenizer, so the encoding is a run setting
chosen by name. Every encoding can be parsed back (:meth:`Encoding.decode`),
which keeps them honest: what the model reads is exactly the grid.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable

import numpy as np

from arcsynth.grid import Grid, parse_grid
from arcsynth.memo import RecentMemo

# Grid texts by encoding and cells (see Encoding.encode).
_ENCODED = RecentMemo(max_chars=8_000_000)

COLOUR_NAMES = ("black", "blue", "red", "green", "yellow", "gray", "magenta", "orange", "azure", "maroon")
"""ARC colour names by index (the names the ARC-AGI web app uses)."""

DIGITS = tuple(str(i) for i in range(10))

COMPACT_ENCODING = "digits"
"""The encoding a prompt falls back to when it does not fit its token budget."""


class UnknownEncoding(ValueError):
    """An encoding name that is not in :data:`ENCODINGS`."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown grid encoding {name!r}; choose one of: {', '.join(sorted(ENCODINGS))}")


@dataclass(frozen=True)
class Encoding:
    """A named text form for grids."""

    name: str
    description: str
    """One or two sentences for the prompt that tell the model how to read the grids."""
    cells: tuple[str, ...]
    """The text of each colour 0..9; cell diffs in feedback use the same words."""
    _encode: Callable[[Grid], str]
    _decode: Callable[[str], Grid]

    def encode(self, grid: Grid) -> str:
        # Every prompt of a task encodes the same grids (on the event loop, once per
        # request): each grid's text is remembered, by its cells.
        arr = np.asarray(grid)
        key = (self._encode, arr.shape, arr.dtype.str, arr.tobytes())
        text = _ENCODED.get(key)
        if text is None:
            # Rows of Python ints: indexing a numpy array cell by cell costs ~5x more.
            text = self._encode(arr.tolist())
            _ENCODED.put(key, text, len(text) + arr.nbytes)
        return text

    def decode(self, text: str) -> Grid:
        """Parse text written by :meth:`encode` back to a grid (raises ``GridError``/``ValueError``)."""
        return self._decode(text)


def _rows(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def _encode_digits(grid: Grid) -> str:
    return "\n".join("".join(DIGITS[int(c)] for c in row) for row in grid)


def _decode_digits(text: str) -> Grid:
    rows = []
    for line in _rows(text):
        if not line.isdigit():
            raise ValueError(f"not a row of digits: {line!r}")
        rows.append([int(ch) for ch in line])
    return parse_grid(rows)


def _encode_spaced(grid: Grid) -> str:
    return "\n".join(" ".join(DIGITS[int(c)] for c in row) for row in grid)


def _decode_spaced(text: str) -> Grid:
    return parse_grid([[int(tok) for tok in line.split()] for line in _rows(text)])


def _encode_numpy(grid: Grid) -> str:
    # One row per line, aligned under the first row like numpy's own repr, so the
    # model sees the 2-D layout and still reads valid Python.
    rows = ["[" + ", ".join(DIGITS[int(c)] for c in row) + "]" for row in grid]
    return "np.array([" + ",\n          ".join(rows) + "])"


def _decode_numpy(text: str) -> Grid:
    text = text.strip()
    if not (text.startswith("np.array(") and text.endswith(")")):
        raise ValueError("expected np.array([...])")
    return parse_grid(ast.literal_eval(text[len("np.array(") : -1]))


def _encode_colours(grid: Grid) -> str:
    return "\n".join(" ".join(COLOUR_NAMES[int(c)] for c in row) for row in grid)


def _decode_colours(text: str) -> Grid:
    index = {name: i for i, name in enumerate(COLOUR_NAMES)}
    rows = []
    for line in _rows(text):
        try:
            rows.append([index[word] for word in line.split()])
        except KeyError as e:
            raise ValueError(f"unknown colour word {e.args[0]!r}") from None
    return parse_grid(rows)


_COLOUR_KEY = ", ".join(f"{i}={name}" for i, name in enumerate(COLOUR_NAMES))

ENCODINGS: dict[str, Encoding] = {
    e.name: e
    for e in (
        Encoding(
            "digits",
            "Grids are written one row per line, one digit (0-9) per cell with no separators; each digit is a colour.",
            DIGITS,
            _encode_digits,
            _decode_digits,
        ),
        Encoding(
            "spaced",
            "Grids are written one row per line, cells separated by spaces; each cell is a colour 0-9.",
            DIGITS,
            _encode_spaced,
            _decode_spaced,
        ),
        Encoding(
            "numpy",
            "Grids are written as numpy arrays, one row per line; each cell is a colour 0-9.",
            DIGITS,
            _encode_numpy,
            _decode_numpy,
        ),
        Encoding(
            "colors",
            "Grids are written one row per line as colour words separated by spaces. "
            f"In the program each colour is an integer: {_COLOUR_KEY}.",
            COLOUR_NAMES,
            _encode_colours,
            _decode_colours,
        ),
    )
}


def get_encoding(name: str) -> Encoding:
    """The encoding called ``name``; :class:`UnknownEncoding` lists the valid names."""
    try:
        return ENCODINGS[name]
    except KeyError:
        raise UnknownEncoding(name) from None
