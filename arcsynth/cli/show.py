"""`arcsynth show RUN_DIR [TASK_ID] [--program ID]`: what a run did, for a terminal, a pipe or a script.

Without a task: the run header, program counts by status and the task list. With a
task: its grids, candidates (lineage by round, verdict summary), REPL attempts, votes
and attempts. With ``--program``: that program's source, the prompt that made it, the
completion and expected | produced | diff per pair. With ``--conversation``: a REPL
attempt turn by turn, each reply with its reasoning folded to a line, its tool calls
and what they returned. ``--json`` prints the same as JSON.
Colour on a terminal; digits and plain text when stdout is not one.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from arcsynth.cli.common import fail
from arcsynth.render import grids_row

RUN_DIR_HELP = "A run directory written by `arcsynth solve` (it holds trace.jsonl)."


# ---------------------------------------------------------------------------------------
# Small formatting helpers, shared by runs.py and report.py


def fmt_score(score: float | None, scored: int | None = None) -> str:
    if score is None:
        return "-"
    s = f"{score:g}"
    return f"{s} / {scored}" if scored is not None else s


def fmt_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def fmt_acc(acc: float | None) -> str:
    return "-" if acc is None else f"{acc:.2f}"


def status_line(counts: dict[str, int]) -> str:
    """'pass 3, wrong 10, no_code 2' (zero counts left out)."""
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"


class Out:
    """Prints renderables on a terminal, or their plain-text form in a pipe."""

    def __init__(self, plain: bool):
        self.plain = plain
        self.console = Console(highlight=False, soft_wrap=plain, no_color=plain, width=None if not plain else 200, emoji=False)

    def line(self, text: str = "", style: str = "") -> None:
        if self.plain:
            typer.echo(text)
        else:
            self.console.print(Text(text, style=style))

    def lines(self, block: RenderableType | list[str]) -> None:
        if isinstance(block, list):
            for line in block:
                typer.echo(line)
        else:
            self.console.print(block)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        if self.plain:
            widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
            if title:
                typer.echo(title)
            typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
            for r in rows:
                typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
            return
        t = Table(title=title or None, title_justify="left", header_style="bold")
        for c in columns:
            t.add_column(c, no_wrap=c in ("task", "program", "status"))
        for r in rows:
            t.add_row(*[escape(v) for v in r])
        self.console.print(t)

    def text_block(self, title: str, body: str, *, lexer: str | None = None) -> None:
        if self.plain:
            typer.echo(f"--- {title} ---")
            typer.echo(body.rstrip("\n"))
            return
        if lexer:
            from rich.syntax import Syntax

            self.console.print(Panel(Syntax(body, lexer, word_wrap=True), title=title, title_align="left"))
        else:
            self.console.print(Panel(Text(body), title=title, title_align="left"))


# ---------------------------------------------------------------------------------------
# The three views


def header_rows(h: Any) -> list[tuple[str, str]]:
    """(label, value) lines of a RunHeader (also used by the HTML report)."""
    model = " / ".join(x for x in (h.backend, h.model) if x) or "-"
    git = (h.git_commit or "-")[:12] + (" (dirty)" if h.git_dirty else "")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(h.started_at)) if h.started_at else "-"
    score = "-" if h.score is None else f"{h.score:g} of {h.tasks_scored} scored tasks ({h.score / max(1, h.tasks_scored):.1%})"
    return [
        ("run", f"{h.name}  ({h.path})"), ("status", h.status), ("model", model), ("dataset", h.dataset or "-"),
        ("config hash", h.config_hash or "-"), ("git commit", git), ("started", started),
        ("elapsed", fmt_duration(h.elapsed_s) + (f" over {h.sessions} sessions" if h.sessions > 1 else "")),
        ("tasks", f"{h.tasks_done} done of {h.tasks}; solved {h.solved}, a program passes all train pairs in {h.train_solved}"),
        ("pass@2 score", score), ("programs", f"{h.programs}: {status_line(h.status_counts)}"),
        ("tokens", f"{h.prompt_tokens + h.completion_tokens} ({h.prompt_tokens} prompt, {h.completion_tokens} completion)"),
        ("trace", f"{h.trace_bytes} bytes, format version {h.trace_version or '-'}"),
    ]


def task_table_rows(rows: list[Any]) -> list[list[str]]:
    return [[r.task_id, r.status, fmt_score(r.score), str(r.programs), str(r.passing), fmt_acc(r.best_train_accuracy),
             str(r.tokens), fmt_duration(r.wall_s)] for r in rows]


TASK_COLUMNS = ["task", "status", "score", "programs", "passing", "best train acc", "tokens", "time"]


def show_run(ix: Any, out: Out, statuses: set[str] | None = None) -> None:
    h = ix.header()
    if out.plain:
        for k, v in header_rows(h):
            typer.echo(f"{k + ':':14}{v}")
    else:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        for k, v in header_rows(h):
            t.add_row(k, escape(v))
        out.console.print(Panel(t, title=f"run {escape(h.name)}", title_align="left", expand=False))
    out.line()
    rows = [r for r in ix.tasks() if statuses is None or r.status in statuses]
    title = "tasks" if statuses is None else f"tasks with status {', '.join(sorted(statuses))}: {len(rows)}"
    out.table(title, TASK_COLUMNS, task_table_rows(rows))


def _note(c: Any) -> str:
    if c.duplicate_of:
        return f"same source as {c.duplicate_of.split('/', 1)[-1]}"
    if c.behaviour_duplicate_of:
        return f"same outputs as {c.behaviour_duplicate_of.split('/', 1)[-1]}"
    return c.detail or ""


def _candidate_rows(detail: Any) -> list[list[str]]:
    rows = []
    for c in detail.candidates:
        pairs = "".join({"pass": "+", "wrong": "-", "error": "E", "timeout": "T", "invalid_output": "I"}.get(s, "?")
                        for s in c.pair_statuses)
        rows.append([c.program_id.split("/", 1)[-1], str(c.round), ", ".join(p.split("/", 1)[-1] for p in c.parent_ids) or "-",
                     c.status, fmt_acc(c.train_accuracy), pairs or "-", str(c.completion_tokens),
                     _note(c)[:70]])
    return rows


def show_task(ix: Any, task_id: str, out: Out, limit: int = 0) -> None:
    d = ix.task(task_id)
    r = d.row
    out.line(f"task {r.task_id}: {r.status}, score {fmt_score(r.score)}, {r.programs} programs ({status_line(r.status_counts)}), "
             f"best train accuracy {fmt_acc(r.best_train_accuracy)}, {r.tokens} tokens, {fmt_duration(r.wall_s)}"
             + (f", attempt {r.attempt}" if r.attempt > 1 else ""), style="bold")
    if r.stop_reason:
        out.line(f"stopped: {r.stop_reason}")
    out.line()
    if d.grids is None:
        out.line(f"grids: {d.grids_error}")
    else:
        g = d.grids
        for i, (a, b) in enumerate(zip(g.train_inputs, g.train_outputs)):
            out.lines(grids_row([(f"train {i} input", a, None), ("output", b, None)], out.plain))
        for i, a in enumerate(g.test_inputs):
            items = [(f"test {i} input", a, None)]
            if g.test_outputs[i] is not None:
                items.append(("answer", g.test_outputs[i], None))
            out.lines(grids_row(items, out.plain))
    out.line()
    shown = d.candidates
    title = "candidates (pairs: + pass, - wrong, E error, T timeout, I invalid output)"
    if limit and len(shown) > limit:
        best = sorted(shown, key=lambda c: (c.status != "pass", -(c.train_accuracy or -1.0)))[:limit]
        keep = {c.program_id for c in best}
        shown = [c for c in shown if c.program_id in keep]
        title = f"the best {limit} of {len(d.candidates)} candidates (--candidates 0 for all; pairs: + pass, - wrong, E error, T timeout, I invalid output)"
    out.table(title, ["program", "round", "parents", "status", "train acc", "pairs", "tokens", "note"],
              _candidate_rows(dataclasses.replace(d, candidates=shown)))
    if d.conversations:
        out.line()
        out.table("REPL attempts (--conversation ID shows one)", ["conversation", "outcome", "turns", "tool calls", "tokens", "sandbox CPU", "program"],
                  [[c.conversation.rpartition("/")[2], c.outcome, str(c.turns), str(c.tool_calls), str(c.completion_tokens),
                    f"{c.sandbox_cpu_s:.2f}s", (c.program_id or "-").removeprefix(f"{task_id}/")] for c in d.conversations])
    for v in d.votes:
        out.line()
        rows = [[str(i), str(len(grp.program_ids)), str(grp.behaviours), f"{grp.weight:g}", "yes" if grp.passing else "no",
                 {None: "?", True: "right", False: "wrong"}[grp.correct], f"{len(grp.output)}x{len(grp.output[0]) if grp.output else 0}"]
                for i, grp in enumerate(v.groups)]
        out.table(f"votes on test input {v.test_index}", ["group", "programs", "votes", "weight", "passing", "answer", "size"], rows)
    for a in d.attempts:
        out.line()
        mark = {None: "", True: " (right)", False: " (wrong)"}
        out.lines(grids_row([(f"test {a.test_index} attempt 1{mark[a.correct_1]}", a.attempt_1, None),
                             (f"attempt 2{mark[a.correct_2]}", a.attempt_2, None)], out.plain))
        if a.sources:
            out.line("  from: " + "; ".join(a.sources))
    if d.reason:
        out.line(f"reason: {d.reason}")


def show_program(ix: Any, task_id: str, program_id: str, out: Out) -> None:
    c = ix.candidate(task_id, program_id)
    s = c.summary
    out.line(f"program {s.program_id}: {s.status}, round {s.round}, train accuracy {fmt_acc(s.train_accuracy)}, "
             f"parents {', '.join(s.parent_ids) or '-'}", style="bold")
    if s.detail:
        out.line(f"note: {s.detail}")
    out.text_block("program", c.source or "(no program extracted)", lexer="python" if c.source else None)
    for m in c.prompt:
        if m.reasoning:
            out.line(f"  ({m.role} reasoning: {fold_line(m.reasoning)})")
        out.text_block(f"prompt ({c.prompt_kind}): {m.role}", m.content)
    if c.reasoning:
        out.text_block("reasoning", c.reasoning)
    out.text_block(f"completion ({s.completion_tokens} tokens, {s.finish_reason})", c.completion or "")
    for p in c.pairs:
        head = f"{p.kind} {p.index}: {p.status}" + (f", cell accuracy {p.cell_accuracy:.2f}" if p.cell_accuracy is not None else "")
        out.line()
        out.line(head + (f": {p.error.strip().splitlines()[-1]}" if p.error else ""), style="bold")
        items = [("input", p.input, None), ("expected", p.expected, None), ("produced", p.produced, None)]
        if p.diff is not None:
            items.append(("diff (x: wrong)", p.produced, p.diff))
        out.lines(grids_row([i for i in items if i[1] is not None or i[0] == "produced"], out.plain))


def fold_line(reasoning: str) -> str:
    """Reasoning folded to one line: its size and its start."""
    words = reasoning.split()
    head = " ".join(words[:12])
    return f"{len(words)} words: {head}{' ...' if len(words) > 12 else ''}"


def show_conversation(ix: Any, task_id: str, conversation: str, out: Out) -> None:
    """A REPL attempt turn by turn: each reply (reasoning folded), its tool calls and what they returned."""
    c = ix.conversation(task_id, conversation)
    s = c.summary
    out.line(f"conversation {s.conversation}: {s.outcome}, {s.turns} turns, {s.tool_calls} tool calls, "
             f"{s.completion_tokens} tokens, {s.sandbox_cpu_s:.2f}s sandbox CPU"
             + (f", program {s.program_id}" if s.program_id else ""), style="bold")
    for m in c.opening:
        out.text_block(f"opening: {m.role}", m.content)
    for k, t in enumerate(c.turns):
        out.line()
        out.line(f"turn {k} ({t.completion_tokens} tokens, {t.finish_reason})", style="bold")
        if t.reasoning:
            out.line(f"  reasoning folded ({fold_line(t.reasoning)})")
        out.text_block("reply", t.text)
        for call in t.tool_calls:
            out.text_block(f"tool call {call.call}: {call.status}, {call.cpu_s:.3f}s CPU", call.code, lexer="python")
            if call.output:
                out.text_block("output", call.output)
            if call.grid is not None:
                out.lines(grids_row([("value", call.grid, None)], out.plain))


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(type(obj).__name__)


def show(
    run_dir: Path = typer.Argument(..., help=RUN_DIR_HELP),
    task_id: Optional[str] = typer.Argument(None, help="A task of the run: show its grids, candidates, votes and attempts."),
    program: Optional[str] = typer.Option(None, "--program", "-p", help="A program id of the task (e.g. r1/q0/c2 or the full id): show it in full."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the run index's records) instead of text."),
    plain: Optional[bool] = typer.Option(None, "--plain/--color", help="Plain text or colour (default: colour on a terminal only)."),
    status: Optional[str] = typer.Option(None, "--status", help="Only tasks with these statuses, comma-separated: solved, train-solved, unsolved, skipped, error, running, killed, pending."),
    candidates: int = typer.Option(0, "--candidates", min=0, help="With TASK_ID: list only the best N candidates (0: all)."),
    conversation: Optional[str] = typer.Option(None, "--conversation", "-c", help="A REPL attempt of the task (e.g. x0): show it turn by turn."),
) -> None:
    """Show what a run did: its header and tasks, one task, or one program (Rich; plain text in a pipe)."""
    from viewer.index import RunIndex, RunIndexError

    from viewer.index import TASK_STATUSES

    if program is not None and task_id is None:
        fail("--program needs a TASK_ID")
    if conversation is not None and (task_id is None or program is not None):
        fail("--conversation needs a TASK_ID and no --program")
    statuses = None
    if status is not None:
        statuses = {x.strip() for x in status.split(",") if x.strip()}
        unknown = statuses - set(TASK_STATUSES)
        if unknown:
            fail(f"--status: unknown status {', '.join(sorted(unknown))}; choose from {', '.join(TASK_STATUSES)}")
    try:
        with RunIndex.open(run_dir) as ix:
            if program is not None and not program.startswith(f"{task_id}/"):
                program = f"{task_id}/{program}"
            if as_json:
                if task_id is None:
                    data: Any = {"header": ix.header(),
                                 "tasks": [r for r in ix.tasks() if statuses is None or r.status in statuses]}
                elif conversation is not None:
                    data = ix.conversation(task_id, conversation)
                elif program is None:
                    data = ix.task(task_id)
                else:
                    data = ix.candidate(task_id, program)
                typer.echo(json.dumps(data, default=_json_default, indent=1))
                return
            out = Out(plain if plain is not None else not sys.stdout.isatty())
            if task_id is None:
                show_run(ix, out, statuses)
            elif conversation is not None:
                show_conversation(ix, task_id, conversation, out)
            elif program is None:
                show_task(ix, task_id, out, candidates)
            else:
                show_program(ix, task_id, program, out)
    except RunIndexError as e:
        fail(str(e))
