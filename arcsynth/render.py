"""Drawing grids and tasks for people: coloured blocks on a terminal, digits elsewhere.

The coloured form paints each cell as two spaces on the official ARC palette
(:data:`arcsynth.grid.PALETTE`), so a grid looks as it does in the ARC web app. The
plain form writes one digit per cell, which survives pipes, logs and diffs.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.panel import Panel
from rich.style import Style
from rich.table import Table
from rich.text import Text

from arcsynth.grid import PALETTE, Grid, shape_str
from arcsynth.task import Pair, Task

__all__ = [
    "CELL_STYLES",
    "grid_plain_lines",
    "grid_diff",
    "grid_text",
    "grids_row",
    "render_task",
    "render_task_plain",
    "side_by_side",
    "TaskView",
    "task_pairs",
]

CELL_STYLES = tuple(Style(bgcolor=c) for c in PALETTE)
"""Rich style per colour index: the cell's background in the ARC palette."""

_WRONG = Style(color="white", bold=True)
"""How a wrong cell is marked over its produced colour."""


def grid_text(grid: Grid, cell_width: int = 2) -> Text:
    """A grid as coloured blocks; two spaces per cell make cells look square."""
    text = Text(no_wrap=True, overflow="ignore")
    blank = " " * cell_width
    for r, row in enumerate(grid):
        if r:
            text.append("\n")
        for v in row:
            text.append(blank, CELL_STYLES[int(v)])
    return text


def grid_plain_lines(grid: Grid) -> list[str]:
    """A grid as lines of digits, one character per cell."""
    return ["".join(str(int(v)) for v in row) for row in grid]


def side_by_side(blocks: Iterable[list[str]], gap: str = "   ") -> list[str]:
    """Join blocks of text lines horizontally, padding each block to its own width."""
    blocks = [b for b in blocks]
    height = max((len(b) for b in blocks), default=0)
    widths = [max((len(line) for line in b), default=0) for b in blocks]
    out = []
    for i in range(height):
        cells = [(b[i] if i < len(b) else "").ljust(w) for b, w in zip(blocks, widths)]
        out.append(gap.join(cells).rstrip())
    return out


def task_pairs(task: Task, *, show_test_outputs: bool = True) -> list[tuple[str, Pair, bool]]:
    """(label, pair, whether to draw its output) for every pair of ``task``, train first."""
    rows = [(f"train {i}", p, True) for i, p in enumerate(task.train)]
    rows += [(f"test {i}", p, show_test_outputs) for i, p in enumerate(task.test)]
    return rows


def _output_label(pair: Pair, show: bool) -> str:
    if pair.output is None:
        return "output unknown"
    return f"output {shape_str(pair.output)}" if show else "output hidden"


def render_task_plain(task: Task, *, show_test_outputs: bool = True) -> str:
    """The whole task as plain text: each pair's input and output side by side, in digits."""
    lines = [f"task {task.id}: {len(task.train)} train, {len(task.test)} test"]
    for label, pair, show in task_pairs(task, show_test_outputs=show_test_outputs):
        left = [f"input {shape_str(pair.input)}", *grid_plain_lines(pair.input)]
        right = [_output_label(pair, show)]
        if show and pair.output is not None:
            right += grid_plain_lines(pair.output)
        lines.append("")
        lines.append(f"{label}:")
        lines += side_by_side([left, right], gap="   ")
    return "\n".join(lines) + "\n"


# Panel border and padding (2 + 2) plus the gap between the input and output columns.
_PANEL_EXTRA = 4
_GAP = 2


class TaskView:
    """A task laid out for the console width at hand: each pair side by side when it fits,
    else with narrower cells, else input above output, so grids are never cropped."""

    def __init__(self, task: Task, *, show_test_outputs: bool = True):
        self.task = task
        self.show_test_outputs = show_test_outputs

    def _pair_panel(self, label: str, pair: Pair, show: bool, max_width: int) -> Panel:
        out_grid = pair.output if show and pair.output is not None else None
        w_in = pair.input.shape[1]
        w_out = out_grid.shape[1] if out_grid is not None else 1
        in_head, out_head = f"input {shape_str(pair.input)}", _output_label(pair, show)
        layout = None
        for cell_width in (2, 1):
            cols = max(w_in * cell_width, len(in_head)) + _GAP + max(w_out * cell_width, len(out_head))
            if cols + _PANEL_EXTRA <= max_width:
                layout = ("side", cell_width)
                break
        if layout is None:
            widest = max(w_in, w_out)
            layout = ("stacked", 2 if widest * 2 + _PANEL_EXTRA <= max_width else 1)
        kind, cell_width = layout
        out: RenderableType = grid_text(out_grid, cell_width) if out_grid is not None else Text("?")
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, _GAP, 0, 0))
        if kind == "side":
            table.add_column(in_head, no_wrap=True)
            table.add_column(out_head, no_wrap=True)
            table.add_row(grid_text(pair.input, cell_width), out)
        else:
            table.show_header = False
            table.add_column(no_wrap=True)
            table.add_row(Text(in_head, style="bold"))
            table.add_row(grid_text(pair.input, cell_width))
            table.add_row(Text(out_head, style="bold"))
            table.add_row(out)
        return Panel(table, title=label, title_align="left", expand=False)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        t = self.task
        yield Text(f"task {t.id}: {len(t.train)} train, {len(t.test)} test", style="bold")
        for label, pair, show in task_pairs(t, show_test_outputs=self.show_test_outputs):
            yield self._pair_panel(label, pair, show, options.max_width)


def render_task(task: Task, *, show_test_outputs: bool = True) -> RenderableType:
    """The whole task for a rich console: one panel per pair, input and output side by side."""
    return TaskView(task, show_test_outputs=show_test_outputs)


# ---------------------------------------------------------------------------------------
# Expected | produced | diff rows (show, verify, the viewer)


def grid_diff(expected: Any, produced: Any) -> list[list[bool]] | None:
    """True where ``produced`` differs from ``expected``; None when the shapes differ."""
    if not expected or not produced or len(expected) != len(produced):
        return None
    if any(len(a) != len(b) for a, b in zip(expected, produced)):
        return None
    return [[x != y for x, y in zip(ra, rb)] for ra, rb in zip(expected, produced)]


def _grid_block(grid: Any, plain: bool, diff: Any = None, cell_width: int = 2) -> RenderableType | list[str]:
    """A grid: coloured cells on a terminal, digits in plain text; wrong cells marked x / ×."""
    if grid is None:
        return ["(none)"] if plain else Text("(none)", style="dim")
    if plain:
        return ["".join("x" if diff is not None and diff[r][c] else str(int(v)) for c, v in enumerate(row))
                for r, row in enumerate(grid)]
    text = Text(no_wrap=True, overflow="ignore")
    blank, mark = " " * cell_width, "×" * cell_width
    for r, row in enumerate(grid):
        if r:
            text.append("\n")
        for c, v in enumerate(row):
            wrong = diff is not None and diff[r][c]
            text.append(mark if wrong else blank, CELL_STYLES[int(v)] + _WRONG if wrong else CELL_STYLES[int(v)])
    return text


def _grid_label(label: str, grid: Any) -> str:
    return label + (f" {len(grid)}x{len(grid[0]) if grid else 0}" if grid else "")


class GridsRow:
    """Labelled grids side by side, with narrower cells or one under another when the console is narrow."""

    def __init__(self, items: list[tuple[str, Any, Any]]):
        self.items = items

    def __rich_console__(self, console: Console, options: Any) -> Any:
        def width(cell: int) -> int:
            return sum(max(cell * (len(g[0]) if g else 6), len(_grid_label(lab, g))) + 3 for lab, g, _ in self.items)

        cell = 2 if width(2) <= options.max_width else 1
        stacked = width(cell) > options.max_width
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0), show_header=not stacked)
        if stacked:
            table.add_column(no_wrap=True)
            for lab, g, d in self.items:
                table.add_row(Text(_grid_label(lab, g), style="bold"))
                table.add_row(_grid_block(g, False, d, cell))  # type: ignore[arg-type]
        else:
            for lab, g, _ in self.items:
                table.add_column(_grid_label(lab, g), no_wrap=True)
            table.add_row(*[_grid_block(g, False, d, cell) for _, g, d in self.items])  # type: ignore[misc]
        yield table


def grids_row(items: Iterable[tuple[str, Any, Any]], plain: bool) -> RenderableType | list[str]:
    """Labelled grids side by side: ``(label, grid, diff)`` each."""
    items = list(items)
    if plain:
        return side_by_side([[_grid_label(label, grid), *_grid_block(grid, True, diff)] for label, grid, diff in items],  # type: ignore[misc]
                            gap="   ")
    return GridsRow(items)


