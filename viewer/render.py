"""Rich renderables of run-index records, shared by the viewer's screens."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text

from arcsynth.render import grids_row

_STATUS_STYLE = {"pass": "green", "wrong": "yellow", "timeout": "magenta", "error": "red", "ok": "cyan"}


def header_text(h: Any, note: str = "") -> Text:
    """The run header: identity, status, totals and program counts by status."""
    elapsed = f"{h.elapsed_s:.0f}s" if h.elapsed_s < 120 else f"{h.elapsed_s / 60:.1f}m"
    score = "-" if h.score is None else f"{h.score:g}/{h.tasks_scored}"
    commit = (h.git_commit or "-")[:10] + ("+dirty" if h.git_dirty else "")
    t = Text()
    t.append(f"{h.name or '(run)'}  ", style="bold")
    t.append(h.status, style={"running": "cyan", "finished": "green", "killed": "red"}.get(h.status, ""))
    t.append(f"   {h.backend or '-'} {h.model or '-'}   {h.dataset or '-'}   config {h.config_hash or '-'}   git {commit}   {elapsed}{note}\n")
    t.append(f"tasks {h.tasks_done}/{h.tasks}   solved {h.solved}   train-solved {h.train_solved}   pass@2 {score}   "
             f"programs {h.programs}   tokens {h.prompt_tokens + h.completion_tokens}\n")
    for status, n in h.status_counts.items():
        t.append(f"{status} ", style=_STATUS_STYLE.get(status, "dim"))
        t.append(f"{n}   ")
    return t


def grids_renderable(grids: Any, error: str | None) -> RenderableType:
    """The task's train pairs and test inputs (outputs when known) in the ARC palette."""
    if grids is None:
        return Text(f"grids unavailable: {error or 'the dataset could not be read'}", style="yellow")
    rows: list[RenderableType] = []
    for i, (a, b) in enumerate(zip(grids.train_inputs, grids.train_outputs)):
        rows.append(Text(f"train {i}", style="bold"))
        rows.append(grids_row([("input", a, None), ("output", b, None)], plain=False))
    for i, a in enumerate(grids.test_inputs):
        out = grids.test_outputs[i] if i < len(grids.test_outputs) else None
        rows.append(Text(f"test {i}", style="bold"))
        items = [("input", a, None)] + ([("answer", out, None)] if out is not None else [])
        rows.append(grids_row(items, plain=False))
    return Group(*rows)


def candidate_label(c: Any) -> Text:
    """One line of the lineage tree: id tail, status, train accuracy."""
    acc = "" if c.train_accuracy is None else f" {c.train_accuracy:.0%}"
    pairs = "".join({"pass": "✓", "wrong": "·", "timeout": "t", "error": "x"}.get(s, "?") for s in c.pair_statuses)
    t = Text(c.program_id.split("/", 1)[-1] + " ")
    t.append(c.status, style=_STATUS_STYLE.get(c.status, "dim"))
    t.append(acc + (f" {pairs}" if pairs else ""))
    return t


def program_renderable(cand: Any) -> RenderableType:
    s = cand.summary
    head = Text(f"{s.program_id}  ", style="bold")
    head.append(s.status, style=_STATUS_STYLE.get(s.status, "dim"))
    if s.parent_ids:
        head.append(f"   parents: {', '.join(s.parent_ids)}")
    if s.detail:
        head.append(f"\n{s.detail}", style="dim")
    if not cand.source:
        return Group(head, Text("(no program extracted)", style="dim"))
    return Group(head, Syntax(cand.source, "python", line_numbers=True, word_wrap=True))


def pairs_renderable(pairs: list[Any]) -> RenderableType:
    """Per pair: expected | produced | diff, wrong cells marked."""
    rows: list[RenderableType] = []
    for p in pairs:
        acc = "" if p.cell_accuracy is None else f" {p.cell_accuracy:.0%} of cells"
        label = Text(f"{p.kind} {p.index}: ", style="bold")
        label.append(p.status, style=_STATUS_STYLE.get(p.status, "dim"))
        label.append(acc + (f"  {p.error}" if p.error else ""))
        rows.append(label)
        items = [("expected", p.expected, None), ("produced", p.produced, None)]
        if p.diff is not None:
            items.append(("diff", p.produced, p.diff))
        if p.expected is not None or p.produced is not None:
            rows.append(grids_row([i for i in items if i[1] is not None], plain=False))
    return Group(*rows) if rows else Text("(not verified)", style="dim")


def votes_text(votes: list[Any]) -> Text:
    t = Text()
    for table in votes:
        t.append(f"votes on test {table.test_index}\n", style="bold")
        for g in table.groups[:8]:
            mark = {True: ("right", "green"), False: ("wrong", "red"), None: ("", "")}[g.correct]
            t.append(f"  weight {g.weight:g}  programs {len(g.program_ids)}  {'passing' if g.passing else 'near miss'}  ")
            t.append(mark[0] + "\n", style=mark[1])
    return t


def attempts_text(attempts: list[Any]) -> Text:
    t = Text()
    for a in attempts:
        t.append(f"attempts on test {a.test_index}: ", style="bold")
        for n, ok in ((1, a.correct_1), (2, a.correct_2)):
            t.append(f"attempt {n} ")
            t.append({True: "right", False: "wrong", None: "?"}[ok] + "  ", style={True: "green", False: "red", None: "dim"}[ok])
        t.append(f"({', '.join(a.sources)})\n", style="dim")
    return t


