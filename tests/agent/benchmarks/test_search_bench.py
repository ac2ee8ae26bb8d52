"""`arcsynth bench search`: every strategy on the same recolouring tasks, side by side."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from arcsynth.cli import app


def test_bench_search_prints_solved_tasks_per_1000_programs_for_each_strategy():
    r = CliRunner().invoke(app, ["bench", "search", "--tasks", "3", "--programs", "16"])
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    figures = dict(re.findall(r"([\w+]+) (\d+\.\d\d)", last))
    assert set(figures) == {"rex", "rex+pool", "evolve", "mix"} and "solved tasks per 1,000 programs" in last
    for name, value in figures.items():
        row = next(line for line in r.output.splitlines() if re.search(rf"\b{re.escape(name)}\s*│", line))
        solved, programs = re.search(r"(\d+)/3", row).group(1), re.findall(r"│\s*(\d+)\s*│", row)
        # The figure is what the row's counts say: solved x 1000 / programs.
        assert abs(float(value) - 1000 * int(solved) / int(programs[0])) < 0.01, row


def test_an_unknown_strategy_is_a_clear_error():
    r = CliRunner().invoke(app, ["bench", "search", "--strategy", "beam"])
    assert r.exit_code == 2 and "unknown beam" in r.output and "rex+pool" in r.output
