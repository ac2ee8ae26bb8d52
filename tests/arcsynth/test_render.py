from __future__ import annotations

import io

from rich.console import Console

from arcsynth.grid import PALETTE, parse_grid
from arcsynth.render import grid_plain_lines, grid_text, render_task, render_task_plain, side_by_side
from arcsynth.task import task_from_json


def _ansi(renderable, width: int = 120) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, color_system="truecolor", width=width).print(renderable)
    return buf.getvalue()


def _bg(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"48;2;{r};{g};{b}m"


def test_grid_text_paints_every_palette_colour():
    g = parse_grid([list(range(10))])
    out = _ansi(grid_text(g))
    for colour in PALETTE:
        assert _bg(colour) in out
    assert grid_text(g).plain == "  " * 10


def test_grid_text_uses_only_the_colours_present():
    out = _ansi(grid_text(parse_grid([[1, 1], [3, 1]])))
    assert _bg(PALETTE[1]) in out and _bg(PALETTE[3]) in out
    assert _bg(PALETTE[2]) not in out


def test_plain_lines_are_digits():
    assert grid_plain_lines(parse_grid([[0, 1], [9, 4]])) == ["01", "94"]


def test_side_by_side_pads_shorter_blocks():
    assert side_by_side([["ab", "c"], ["1", "2", "3"]], gap=" ") == ["ab 1", "c  2", "   3"]


def _task(small_task):
    return task_from_json(small_task(n_test=1), "demo")


def test_plain_task_puts_input_and_output_side_by_side_with_sizes(small_task):
    text = render_task_plain(_task(small_task))
    lines = text.splitlines()
    assert lines[0] == "task demo: 2 train, 1 test"
    i = lines.index("train 0:")
    assert lines[i + 1].split() == ["input", "2x2", "output", "2x2"]
    assert lines[i + 2].split() == ["01", "12"]
    assert lines[i + 3].split() == ["23", "34"]
    j = lines.index("test 0:")
    assert lines[j + 1].split() == ["input", "1x3", "output", "1x3"]
    assert lines[j + 2].split() == ["012", "123"]
    assert "\x1b" not in text


def test_plain_task_can_hide_test_outputs(small_task):
    text = render_task_plain(_task(small_task), show_test_outputs=False)
    j = text.splitlines().index("test 0:")
    assert text.splitlines()[j + 1].split() == ["input", "1x3", "output", "hidden"]
    assert "123" not in text.split("test 0:")[1]


def test_plain_task_marks_unknown_test_outputs(small_task):
    t = task_from_json(small_task(with_test_output=False), "demo")
    assert "output unknown" in render_task_plain(t)


def test_rich_task_shows_sizes_labels_and_palette(small_task):
    out = _ansi(render_task(_task(small_task)))
    assert "task demo: 2 train, 1 test" in out
    for label in ("train 0", "train 1", "test 0", "input 2x2", "output 2x2", "input 1x1", "output 1x1", "input 1x3", "output 1x3"):
        assert label in out
    for colour in range(5):  # cells 0..4 appear in the train grids
        assert _bg(PALETTE[colour]) in out
    # input and output of a pair share lines: the header row holds both sizes
    assert any("input 2x2" in line and "output 2x2" in line for line in out.splitlines())


def test_rich_task_hides_test_outputs(small_task):
    out = _ansi(render_task(_task(small_task), show_test_outputs=False))
    assert "output hidden" in out


def test_wide_pairs_are_never_cropped_on_narrow_consoles():
    # The last column alone carries colours 9 (input) and 7 (output): cropping would lose them.
    inp = [[0] * 29 + [9] for _ in range(30)]
    out = [[0] * 29 + [7] for _ in range(30)]
    t = task_from_json({"train": [{"input": inp, "output": out}], "test": [{"input": inp}]}, "wide")
    for width in (160, 100, 80, 40):
        ansi = _ansi(render_task(t), width=width)
        assert _bg(PALETTE[9]) in ansi and _bg(PALETTE[7]) in ansi, width
        buf = io.StringIO()
        c = Console(file=buf, width=width, color_system=None)
        c.print(render_task(t))
        assert max(len(line) for line in buf.getvalue().splitlines()) <= width
        assert "input 30x30" in buf.getvalue() and "output 30x30" in buf.getvalue()
