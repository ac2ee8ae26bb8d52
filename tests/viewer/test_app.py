"""The Textual viewer driven headless by Textual's pilot, on a real recorded run."""

from __future__ import annotations

import shutil

import pytest
from textual.widgets import DataTable, Static, Tree

from viewer.app import CompareScreen, RunScreen, SearchScreen, TaskScreen, ViewerApp



def text_of(app: ViewerApp, selector: str) -> str:
    """The plain text of what a Static shows (its Rich renderable, drawn 200 columns wide)."""
    from rich.console import Console

    widget = app.screen.query_one(selector, Static)
    console = Console(width=200, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(widget.content)
    return console.export_text()


def table_rows(app: ViewerApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_the_run_screen_shows_the_header_and_every_task(recorded_run):
    from viewer.index import RunIndex

    with RunIndex.open(recorded_run) as ix:
        tasks = [r.task_id for r in ix.tasks()]
        header = ix.header()
    app = ViewerApp(recorded_run)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        head = text_of(app, "#run-header")
        assert "finished" in head and f"programs {header.programs}" in head and "wrong" in head
        assert [r[0] for r in table_rows(app, "#tasks")] == tasks


async def test_moving_opening_a_task_and_walking_its_candidates(recorded_run):
    app = ViewerApp(recorded_run)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        second = table_rows(app, "#tasks")[1][0]
        await pilot.press("j", "enter")
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen) and app.screen.task_id == second
        assert f"task {second}" in text_of(app, "#task-header")
        tree = app.screen.query_one("#lineage", Tree)
        assert "round 0" in str(tree.root.children[0].label)
        first_program = app.screen.program_id
        assert first_program is not None and first_program in text_of(app, "#program")
        await pilot.press("j", "j")
        await pilot.pause()
        assert app.screen.program_id != first_program  # the detail follows the cursor
        assert app.screen.program_id in text_of(app, "#program")
        assert "train 0" in text_of(app, "#pairs") or "not verified" in text_of(app, "#pairs") or "no program" in text_of(app, "#program")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)


async def test_a_wrong_candidate_shows_expected_produced_and_diff(recorded_run):
    from viewer.index import RunIndex

    with RunIndex.open(recorded_run) as ix:
        found = next((r.task_id, c.program_id) for r in ix.tasks() for c in ix.task(r.task_id).candidates
                     if c.status == "wrong")
    app = ViewerApp(recorded_run)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause()
        app.push_screen(TaskScreen(*found))
        await pilot.pause()
        pairs = text_of(app, "#pairs")
        assert "expected" in pairs and "produced" in pairs and "wrong" in pairs


async def test_filter_by_status_and_jump_to_a_task(recorded_run):
    from viewer.index import RunIndex

    with RunIndex.open(recorded_run) as ix:
        rows = ix.tasks()
    app = ViewerApp(recorded_run)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        await pilot.press("f")
        await pilot.pause()
        screen = app.screen
        assert screen.status_filter is not None
        shown = table_rows(app, "#tasks")
        assert shown and all(r[1] == screen.status_filter for r in shown)
        assert len(shown) == sum(r.status == screen.status_filter for r in rows)
        last = rows[-1].task_id
        await pilot.press("t")
        await pilot.pause()
        for ch in last[:5]:
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.selected_task() == last and app.screen.status_filter is None


async def test_search_finds_programs_and_n_walks_the_matches(recorded_run):
    app = ViewerApp(recorded_run)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        await pilot.press("slash")
        await pilot.pause()
        for ch in "zip(*grid)":
            await pilot.press(ch if ch != "*" else "asterisk")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SearchScreen) and app.hits
        assert all("zip(*grid)" in h.snippet for h in app.hits if h.where == "program")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        first = (app.screen.task_id, app.screen.program_id)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        if len(app.hits) > 1:
            assert (app.screen.task_id, app.screen.program_id) != first or app.hits[0].task_id == app.hits[1].task_id


async def test_compare_two_runs(recorded_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(recorded_run, other, ignore=shutil.ignore_patterns("index.sqlite*"))
    app = ViewerApp(recorded_run, other)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        rows = table_rows(app, "#compare")
        assert rows and all(r[1] == r[2] and r[5] == "0" and r[6] == "0" for r in rows)  # the same run twice


async def test_a_run_being_written_appears_live(recorded_run):
    # Cut the trace back to its first task, open the viewer, then write the rest back.
    trace = recorded_run / "trace.jsonl"
    data = trace.read_bytes()
    lines = data.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if b'"event":"task_start"' in ln]
    assert len(starts) >= 2
    trace.write_bytes(b"".join(lines[:starts[1]]))
    app = ViewerApp(recorded_run, refresh_s=0.2)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        before = table_rows(app, "#tasks")
        with open(trace, "ab") as f:
            f.write(b"".join(lines[starts[1]:]))
        for _ in range(20):
            await pilot.pause(0.1)
            if table_rows(app, "#tasks") != before:
                break
        after = table_rows(app, "#tasks")
        assert after != before
        assert sum(r[1] in ("solved", "train-solved", "unsolved") for r in after) > sum(
            r[1] in ("solved", "train-solved", "unsolved") for r in before)


async def test_help_lists_the_keys(recorded_run):
    app = ViewerApp(recorded_run)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert "next / previous match" in text_of(app, "#help")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)


def test_a_missing_directory_is_a_clear_error(tmp_path):
    from viewer.index import RunIndexError

    with pytest.raises(RunIndexError, match="no-such-run"):
        ViewerApp(tmp_path / "no-such-run")


def test_the_command_outside_a_terminal_points_to_show(recorded_run):
    from typer.testing import CliRunner

    from arcsynth.cli import app as cli_app

    r = CliRunner().invoke(cli_app, ["view", str(recorded_run)])
    assert r.exit_code == 2 and "arcsynth show" in r.output and "Traceback" not in r.output
