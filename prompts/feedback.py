"""Feedback on an earlier program, written for the model that will refine it.

What the strong refinement loops show (Greenblatt, SOAR, Poetiq): which train
pairs passed, the wrong output next to the expected one with a cell diff, shape
mismatches stated plainly, and the tail of the error. Everything here is built
from a :class:`CandidateVerdict` computed by the trusted process; test outputs
are never compared, so only crashes on test inputs are reported.

Three detail levels exist so a prompt can shrink to its token budget:
``full`` (input, expected, produced and diff grids), ``diff`` (only the diff, or
the produced grid when the shape is wrong: the input and expected output are
already shown in the examples), ``summary`` (one line per pair).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from arcsynth.grid import Grid, GridError, parse_grid, shape_str
from arcsynth.task import Pair, Task
from prompts.encodings import Encoding
from sandbox.verdict import CandidateVerdict, PairVerdict

FeedbackDetail = Literal["full", "diff", "summary"]
FEEDBACK_DETAILS: tuple[FeedbackDetail, ...] = ("full", "diff", "summary")

# Traceback lines kept per detail level: the last lines name the failing line and
# the exception; earlier frames are mostly the harness.
_ERROR_LINES = {"full": 12, "diff": 5, "summary": 1}
_MAX_LINE_CHARS = 240


def error_tail(text: str | None, detail: FeedbackDetail = "full") -> str:
    """The last lines of an error text, each cut to a sane width."""
    if not text:
        return ""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    lines = lines[-_ERROR_LINES[detail] :]
    return "\n".join(line if len(line) <= _MAX_LINE_CHARS else line[: _MAX_LINE_CHARS - 3] + "..." for line in lines)


def cell_diff(produced: Grid, expected: Grid, encoding: Encoding) -> str:
    """Produced and expected grids of the same shape overlaid: a cell reads
    ``produced/expected`` where they differ and its value where they agree.

    Keeping the agreeing values (rather than ``.``) lets the model read both
    grids off the diff alone, which is what the ``diff`` detail level relies on.
    """
    if produced.shape != expected.shape:
        raise ValueError(f"cell_diff needs equal shapes, got {shape_str(produced)} and {shape_str(expected)}")
    names = encoding.cells
    cells = [
        [names[int(p)] if p == e else f"{names[int(p)]}/{names[int(e)]}" for p, e in zip(prow, erow)]
        for prow, erow in zip(produced, expected)
    ]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(" ".join(c.ljust(width) for c in row).rstrip() for row in cells)


def _produced_grid(verdict: PairVerdict) -> Grid | None:
    if verdict.output is None:
        return None
    try:
        return parse_grid(verdict.output)
    except GridError:
        return None


def score_line(verdict: CandidateVerdict) -> str:
    """The parent's train score in one line."""
    n = len(verdict.train)
    return f"passed {verdict.pairs_passed} of {n} train example{'s' if n != 1 else ''}, mean cell accuracy {verdict.train_accuracy:.2f}"


def pair_feedback(
    number: int,
    pair: Pair,
    verdict: PairVerdict,
    encoding: Encoding,
    detail: FeedbackDetail = "full",
) -> str:
    """Feedback on one train pair, labelled ``Example <number>``."""
    label = f"Example {number}"
    status = verdict.status
    if status == "pass":
        return f"{label}: correct."
    if status == "timeout":
        extra = f" ({error_tail(verdict.error, 'summary')})" if verdict.error else ""
        return f"{label}: timed out: the program did not finish within the time limit{extra}."
    if status == "error":
        kind = verdict.error_type or "an error"
        tail = error_tail(verdict.error, detail)
        return f"{label}: the program raised {kind}:\n{tail}" if tail else f"{label}: the program raised {kind}."
    if status == "invalid_output":
        why = error_tail(verdict.error, detail) or "the returned value is not a 2-D grid of integers 0-9"
        return f"{label}: invalid output: {why}"
    if status == "unchecked":
        return f"{label}: not checked."

    # status == "wrong"
    expected = pair.output
    produced = _produced_grid(verdict)
    if expected is None or produced is None:
        return f"{label}: wrong output."
    lines: list[str] = []
    shape_ok = produced.shape == expected.shape
    if shape_ok:
        n_wrong = int(np.count_nonzero(produced != expected))
        lines.append(f"{label}: wrong output: {n_wrong} of {expected.size} cells differ (shape {shape_str(expected)} is right).")
    else:
        lines.append(f"{label}: wrong shape: your output is {shape_str(produced)}, expected {shape_str(expected)}.")
    if detail == "summary":
        return lines[0]
    if detail == "full":
        lines += [f"Input ({shape_str(pair.input)}):", encoding.encode(pair.input)]
        lines += [f"Expected output ({shape_str(expected)}):", encoding.encode(expected)]
    if not shape_ok or detail == "full":
        lines += [f"Your output ({shape_str(produced)}):", encoding.encode(produced)]
    if shape_ok:
        lines += ["Cell diff (your value/expected value where they differ):", cell_diff(produced, expected, encoding)]
    return "\n".join(lines)


def parent_feedback(
    task: Task,
    verdict: CandidateVerdict,
    encoding: Encoding,
    *,
    shown: list[int],
    detail: FeedbackDetail = "full",
    focus: list[int] | None = None,
) -> str:
    """Feedback on one earlier program over the train pairs in ``shown``.

    ``shown`` holds train indices in the order the prompt displays them;
    feedback for ``shown[k]`` is labelled ``Example k+1`` to match. ``focus``
    (train indices) limits the detailed feedback to those pairs, a batch of
    failure cases; the other pairs get one summary line. None = every pair.
    """
    if len(verdict.train) != len(task.train):
        raise ValueError(
            f"task {task.id}: verdict has {len(verdict.train)} train results but the task has {len(task.train)} train pairs"
        )
    parts: list[str] = []
    seen_errors: dict[str, int] = {}
    for k, i in enumerate(shown, start=1):
        v = verdict.train[i]
        pair_detail: FeedbackDetail = detail if focus is None or i in focus else "summary"
        # The same crash on every pair is common; repeating a long traceback
        # costs tokens and tells the model nothing new.
        if v.status == "error" and pair_detail != "summary":
            key = f"{v.error_type}\n{v.error}"
            if key in seen_errors:
                parts.append(f"Example {k}: the program raised the same {v.error_type or 'error'} as in example {seen_errors[key]}.")
                continue
            seen_errors[key] = k
        parts.append(pair_feedback(k, task.train[i], v, encoding, pair_detail))
    hidden = len(task.train) - len(shown)
    if hidden:
        hidden_passed = sum(verdict.train[i].status == "pass" for i in range(len(task.train)) if i not in shown)
        parts.append(f"({hidden} more train example{'s' if hidden != 1 else ''} not shown for space; it passed {hidden_passed} of them.)")
    for t, v in enumerate(verdict.test, start=1):
        if v.status in ("error", "timeout", "invalid_output"):
            what = {"error": f"raised {v.error_type or 'an error'}", "timeout": "timed out", "invalid_output": "returned an invalid grid"}[
                v.status
            ]
            tail = error_tail(v.error, "summary")
            if v.error_type and tail.startswith(f"{v.error_type}:"):
                tail = tail[len(v.error_type) + 1 :].strip()
            parts.append(f"Test input {t}: the program {what}{': ' + tail if tail else ''}.")
    sep = "\n\n" if detail != "summary" else "\n"
    return sep.join(parts)
