"""Refinement feedback on real ARC tasks, with verdicts as the trusted process
would write them for a wrong program."""

from __future__ import annotations

import numpy as np
import pytest

from arcsynth.grid import grid_to_list
from prompts.encodings import ENCODINGS
from prompts.feedback import cell_diff, error_tail, pair_feedback, parent_feedback, score_line
from sandbox.verdict import CandidateVerdict, PairVerdict

SPACED = ENCODINGS["spaced"]


def wrong(produced: np.ndarray, expected: np.ndarray) -> PairVerdict:
    """The verdict the trusted comparison gives a wrong grid."""
    same = produced.shape == expected.shape
    return PairVerdict(
        status="wrong",
        output=grid_to_list(produced),
        expected_shape=expected.shape,
        shape_match=same,
        cell_accuracy=float((produced == expected).mean()) if same else None,
    )


def passed(expected: np.ndarray) -> PairVerdict:
    return PairVerdict(status="pass", output=grid_to_list(expected), expected_shape=expected.shape, shape_match=True, cell_accuracy=1.0)


TRACEBACK = "\n".join(
    ["Traceback (most recent call last):"]
    + [f'  File "helper_{i}.py", line {i}, in step_{i}\n    step_{i + 1}(grid)' for i in range(10)]
    + ['  File "program.py", line 7, in transform', "    return grid[row + 10]", "IndexError: index 12 is out of bounds for axis 0 with size 3"]
)


def test_cell_diff_marks_exactly_the_wrong_cells(arc_task):
    task = arc_task("007bbfb7")
    expected = task.train[0].output
    produced = expected.copy()
    changed = {(0, 0): 3, (4, 8): 1, (8, 2): 9}
    for (r, c), v in changed.items():
        produced[r, c] = v
    rows = [line.split() for line in cell_diff(produced, expected, SPACED).splitlines()]
    assert len(rows) == 9 and all(len(row) == 9 for row in rows)
    for r in range(9):
        for c in range(9):
            if (r, c) in changed:
                assert rows[r][c] == f"{changed[(r, c)]}/{expected[r, c]}"
            else:
                assert rows[r][c] == str(expected[r, c])


def test_wrong_pair_shows_input_expected_produced_and_diff(arc_task):
    task = arc_task("007bbfb7")
    pair = task.train[1]
    produced = pair.output.copy()
    produced[2, 1] = 5
    text = pair_feedback(2, pair, wrong(produced, pair.output), SPACED, "full")
    assert text.startswith("Example 2: wrong output: 1 of 81 cells differ")
    assert SPACED.encode(pair.input) in text
    assert SPACED.encode(pair.output) in text
    assert SPACED.encode(produced) in text
    diff_rows = text.split("Cell diff")[1].splitlines()[1:]
    assert diff_rows[2].split()[1] == f"5/{pair.output[2, 1]}"


def test_shape_mismatch_is_stated_plainly(arc_task):
    task = arc_task("007bbfb7")
    pair = task.train[0]
    # The identity program: 3x3 out where 9x9 is expected.
    text = pair_feedback(1, pair, wrong(pair.input, pair.output), SPACED, "full")
    assert "your output is 3x3, expected 9x9" in text
    assert "Cell diff" not in text
    assert f"Your output (3x3):\n{SPACED.encode(pair.input)}" in text


def test_error_shows_type_and_traceback_tail(arc_task):
    task = arc_task("007bbfb7")
    v = PairVerdict(status="error", error_type="IndexError", error=TRACEBACK)
    full = pair_feedback(3, task.train[2], v, SPACED, "full")
    assert full.startswith("Example 3: the program raised IndexError:")
    assert full.endswith("IndexError: index 12 is out of bounds for axis 0 with size 3")
    assert "return grid[row + 10]" in full
    # Only the tail: the first frames of a long traceback are dropped.
    assert "helper_0.py" not in full and "Traceback (most recent call last)" not in full
    summary = pair_feedback(3, task.train[2], v, SPACED, "summary")
    assert summary == "Example 3: the program raised IndexError:\nIndexError: index 12 is out of bounds for axis 0 with size 3"


def test_timeout_and_invalid_output_are_reported(arc_task):
    task = arc_task("007bbfb7")
    t = pair_feedback(1, task.train[0], PairVerdict(status="timeout", error_type="Timeout", error="no result after 2.0 s"), SPACED)
    assert "timed out" in t and "2.0 s" in t
    i = pair_feedback(1, task.train[0], PairVerdict(status="invalid_output", error_type="InvalidOutput", error="cell value 12 is outside 0..9"), SPACED)
    assert i == "Example 1: invalid output: cell value 12 is outside 0..9"


def _mixed_verdict(task) -> CandidateVerdict:
    """A program on 007bbfb7 (5 train pairs): wrong cells, wrong shape, crash, pass, timeout."""
    p = task.train
    off_by_one = p[0].output.copy()
    off_by_one[0, 0] = 1
    train = [
        wrong(off_by_one, p[0].output),
        wrong(p[1].input, p[1].output),
        PairVerdict(status="error", error_type="IndexError", error=TRACEBACK),
        passed(p[3].output),
        PairVerdict(status="timeout", error_type="Timeout", error="no result after 2.0 s"),
    ]
    test = [PairVerdict(status="error", error_type="ValueError", error="ValueError: could not broadcast")]
    return CandidateVerdict(train=train, test=test, isolation=["rlimits"])


def test_parent_feedback_covers_every_shown_pair_in_display_order(arc_task):
    task = arc_task("007bbfb7")
    verdict = _mixed_verdict(task)
    shown = [3, 0, 1, 2, 4]  # shuffled display order
    text = parent_feedback(task, verdict, SPACED, shown=shown, detail="full")
    assert "Example 1: correct." in text  # train pair 3, shown first
    assert "Example 2: wrong output: 1 of 81 cells differ" in text
    assert "Example 3: wrong shape: your output is 3x3, expected 9x9." in text
    assert "Example 4: the program raised IndexError" in text
    assert "Example 5: timed out" in text
    assert "Test input 1: the program raised ValueError: could not broadcast." in text
    assert text.index("Example 1:") < text.index("Example 2:") < text.index("Example 5:")


def test_parent_feedback_notes_hidden_pairs(arc_task):
    task = arc_task("007bbfb7")
    text = parent_feedback(task, _mixed_verdict(task), SPACED, shown=[0, 1], detail="summary")
    assert "3 more train examples not shown for space; it passed 1 of them." in text
    assert "Example 3" not in text


def test_repeated_error_is_not_repeated_in_full(arc_task):
    task = arc_task("25ff71a9")  # 4 train pairs
    crash = PairVerdict(status="error", error_type="IndexError", error=TRACEBACK)
    verdict = CandidateVerdict(train=[crash] * 4, test=[], isolation=[])
    text = parent_feedback(task, verdict, SPACED, shown=[0, 1, 2, 3], detail="full")
    assert text.count("return grid[row + 10]") == 1
    assert "Example 4: the program raised the same IndexError as in example 1." in text


def test_detail_levels_shorten_feedback(arc_task):
    task = arc_task("007bbfb7")
    verdict = _mixed_verdict(task)
    shown = list(range(5))
    full = parent_feedback(task, verdict, SPACED, shown=shown, detail="full")
    diff = parent_feedback(task, verdict, SPACED, shown=shown, detail="diff")
    summary = parent_feedback(task, verdict, SPACED, shown=shown, detail="summary")
    assert len(summary) < len(diff) < len(full)
    # diff: no input/expected grids (the examples show them), still the diff and the wrong-shape output
    assert "Expected output" not in diff and "Input (" not in diff
    assert "Cell diff" in diff and "Your output (3x3)" in diff
    # summary: one line per shown pair (an error keeps its last traceback line), plus the test line
    assert "Cell diff" not in summary and "Your output" not in summary
    assert len(summary.splitlines()) == 5 + 1 + 1


def test_colour_word_diff_uses_colour_words(arc_task):
    task = arc_task("007bbfb7")
    expected = task.train[0].output  # colours 0 and 7
    produced = expected.copy()
    produced[0, 0] = 1
    diff = cell_diff(produced, expected, ENCODINGS["colors"])
    assert diff.splitlines()[0].split()[0] == "blue/black"


def test_score_line_reports_pairs_passed_and_accuracy(arc_task):
    task = arc_task("007bbfb7")
    verdict = _mixed_verdict(task)
    # accuracy: (80/81 + 0 + 0 + 1 + 0) / 5
    assert score_line(verdict) == f"passed 1 of 5 train examples, mean cell accuracy {(80 / 81 + 1) / 5:.2f}"


def test_error_tail_cuts_long_lines():
    assert error_tail("x" * 1000).endswith("...")
    assert len(error_tail("x" * 1000)) == 240


def test_verdict_for_another_task_is_rejected(arc_task):
    task = arc_task("007bbfb7")
    verdict = CandidateVerdict(train=[PairVerdict(status="pass")], test=[], isolation=[])
    with pytest.raises(ValueError, match="007bbfb7"):
        parent_feedback(task, verdict, SPACED, shown=[0])
