"""`arcsynth report RUN_DIR --html OUT.html`: one self-contained static HTML file of a run.

The page needs no server and no network (no scripts, fonts or images from
elsewhere): the run summary, then per task its grids in the ARC palette, the best
programs and the two attempts per test input, marked right or wrong when the
answers are known. Tasks fold (``<details>``); solved tasks first.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import typer

from arcsynth.cli.common import fail

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;margin:0} table.kv td{padding:1px 12px 1px 0;vertical-align:top}
table.list{border-collapse:collapse;margin:.5em 0} table.list td,table.list th{border-bottom:1px solid #ddd;padding:2px 10px;text-align:left}
details{border:1px solid #ccc;border-radius:6px;margin:.6em 0;padding:.4em .8em} summary{cursor:pointer}
.grids{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start;margin:.5em 0}
.g{display:inline-grid;gap:1px;background:#555;border:1px solid #555}
.g span{width:12px;height:12px;display:block}
.cap{font-size:12px;color:#555;margin-bottom:2px}
.right{color:#1a7f37;font-weight:600} .wrong{color:#cf222e;font-weight:600}
pre{background:#f6f8fa;padding:.6em;overflow:auto;font-size:12.5px;border-radius:4px}
.st-solved{color:#1a7f37} .st-train-solved{color:#9a6700} .st-error,.st-killed{color:#cf222e}
""" + "".join(f".c{i}{{background:{c}}}" for i, c in enumerate(
    ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00", "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")))

_ORDER = {"solved": 0, "train-solved": 1, "unsolved": 2, "running": 3, "killed": 4, "error": 5, "skipped": 6, "pending": 7}


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def grid_html(grid: Any, caption: str, css_class: str = "") -> str:
    """A grid as a CSS grid of coloured cells, with a caption."""
    if not grid:
        return f'<div><div class="cap">{_e(caption)}</div><i>none</i></div>'
    rows, cols = len(grid), len(grid[0])
    cells = "".join(f'<span class="c{int(v)}"></span>' for row in grid for v in row)
    return (f'<div><div class="cap {css_class}">{_e(caption)} ({rows}x{cols})</div>'
            f'<div class="g" style="grid-template-columns:repeat({cols},12px)">{cells}</div></div>')


def _best_programs(ix: Any, detail: Any, k: int) -> list[Any]:
    ranked = sorted(
        (c for c in detail.candidates if c.train_accuracy is not None and not c.behaviour_duplicate_of),
        key=lambda c: (c.status != "pass", -(c.train_accuracy or 0.0), c.round, c.program_id),
    )
    return [ix.candidate(detail.task_id, c.program_id) for c in ranked[:k]]


def task_html(ix: Any, row: Any, best: int) -> str:
    from arcsynth.cli.show import fmt_acc, fmt_duration, fmt_score, status_line

    head = (f'<summary><h2 style="display:inline">{_e(row.task_id)}</h2> &nbsp; '
            f'<span class="st-{_e(row.status)}">{_e(row.status)}</span> &middot; score {_e(fmt_score(row.score))} &middot; '
            f'{row.programs} programs &middot; best train accuracy {_e(fmt_acc(row.best_train_accuracy))} &middot; '
            f'{row.tokens} tokens &middot; {_e(fmt_duration(row.wall_s))}</summary>')
    if row.status == "pending":
        return f"<details>{head}<p>not started</p></details>"
    d = ix.task(row.task_id)
    parts = [head, f"<p>programs: {_e(status_line(row.status_counts))}"
             + (f"<br>stopped: {_e(row.stop_reason)}" if row.stop_reason else "") + "</p>"]
    if d.grids is None:
        parts.append(f"<p>grids: {_e(d.grids_error)}</p>")
    else:
        g = d.grids
        pairs = "".join(f'<div class="grids" style="gap:6px;border-right:1px solid #ddd;padding-right:12px">'
                        f'{grid_html(a, f"train {i} in")}{grid_html(b, "out")}</div>'
                        for i, (a, b) in enumerate(zip(g.train_inputs, g.train_outputs)))
        parts.append(f'<div class="grids">{pairs}</div>')
    for a in d.attempts:
        marks = {None: ("", ""), True: ("right", "right"), False: ("wrong", "wrong")}
        m1, m2 = marks[a.correct_1], marks[a.correct_2]
        items = [grid_html(d.grids.test_inputs[a.test_index] if d.grids else None, f"test {a.test_index} input")]
        if d.grids and d.grids.test_outputs[a.test_index] is not None:
            items.append(grid_html(d.grids.test_outputs[a.test_index], "answer"))
        items.append(grid_html(a.attempt_1, f"attempt 1 {m1[0]}", m1[1]))
        items.append(grid_html(a.attempt_2, f"attempt 2 {m2[0]}", m2[1]))
        parts.append(f'<div class="grids">{"".join(items)}</div>')
        if a.sources:
            parts.append(f'<div class="cap">from: {_e("; ".join(a.sources))}</div>')
    progs = _best_programs(ix, d, best)
    if progs:
        parts.append(f"<p><b>best programs</b> (of {len(d.candidates)})</p>")
        for c in progs:
            s = c.summary
            parts.append(f'<div class="cap">{_e(s.program_id)}: {_e(s.status)}, train accuracy {_e(fmt_acc(s.train_accuracy))}, '
                         f'round {s.round}{", parents " + _e(", ".join(s.parent_ids)) if s.parent_ids else ""}</div>'
                         f"<pre>{_e(c.source or '')}</pre>")
    if d.reason:
        parts.append(f"<p>reason: {_e(d.reason)}</p>")
    return "<details>" + "".join(parts) + "</details>"


def build_report(ix: Any, *, best: int = 2) -> str:
    """The whole HTML page of the run ``ix`` (a RunIndex)."""
    from arcsynth.cli.show import TASK_COLUMNS, header_rows, task_table_rows

    h = ix.header()
    rows = ix.tasks()
    kv = "".join(f"<tr><td><b>{_e(k)}</b></td><td>{_e(v)}</td></tr>" for k, v in header_rows(h))
    table = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in task_table_rows(rows))
    ordered = sorted(rows, key=lambda r: (_ORDER.get(r.status, 9), -(r.score or 0), r.order))
    tasks = "\n".join(task_html(ix, r, best) for r in ordered)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>arcsynth run {_e(h.name)}</title>'
            f"<style>{_CSS}</style></head><body><h1>arcsynth run {_e(h.name)}</h1>"
            f'<table class="kv">{kv}</table><h2 style="margin-top:1em">tasks</h2>'
            f'<table class="list"><tr>{"".join(f"<th>{_e(c)}</th>" for c in TASK_COLUMNS)}</tr>{table}</table>'
            f'<h2 style="margin-top:1em">per task</h2>{tasks}</body></html>\n')


def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `arcsynth solve`."),
    html_out: Path = typer.Option(..., "--html", help="The HTML file to write (self-contained: no server, no network)."),
    best: int = typer.Option(2, "--best", min=0, help="Programs shown per task, best first."),
) -> None:
    """Write a self-contained static HTML report of a run: summary, per task grids, best programs, attempts."""
    from agent.rundir import RecordError, atomic_write_text
    from viewer.index import RunIndex, RunIndexError

    try:
        with RunIndex.open(run_dir) as ix:
            page = build_report(ix, best=best)
    except RunIndexError as e:
        fail(str(e))
    if not html_out.parent.is_dir():
        fail(f"cannot write {html_out}: {html_out.parent} is not a directory")
    try:
        atomic_write_text(html_out, page)
    except RecordError as e:
        fail(str(e))
    typer.echo(f"wrote {html_out} ({len(page.encode()):,} bytes)")
