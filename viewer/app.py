"""`arcsynth view RUN_DIR [RUN_B]`: the interactive trace viewer (Textual).

Everything it shows comes from the run index (:mod:`viewer.index`): the header and the
task list from SQLite, a task's candidates, prompts, completions and verdicts read from
the trace only when that task is opened. A run being written is followed live: the
index is refreshed every second and the screens redraw when something new arrived.

Screens: the run (header, program counts, task list), a task (grids, candidates as a
lineage tree by round, the selected candidate's program, prompt, completion and
expected | produced | diff per pair, votes and attempts), search results, and the
comparison of two runs. Keys follow vim (j/k, h/l, g/G); `?` lists them all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Collapsible, DataTable, Footer, Input, Static, Tree

from viewer.index import TASK_STATUSES, RunIndex
from viewer.render import attempts_text, candidate_label, grids_renderable, header_text, pairs_renderable, program_renderable, votes_text

REFRESH_S = 1.0
"""How often a running run is checked for new events (the issue asks for < 2 s)."""

TASK_COLUMNS = ("task", "status", "score", "programs", "best train", "tokens", "time")


class HelpScreen(ModalScreen[None]):
    """Every key binding, on `?`."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        rows = [
            ("j / k, arrows", "move down / up"), ("g / G", "first / last row"), ("enter, l", "open"),
            ("h, escape", "back"), ("s", "sort by the next column (again: reverse)"), ("f", "filter by task status (cycles)"),
            ("t", "jump to a task id"), ("/", "search prompts, completions and programs"), ("n / N", "next / previous match"),
            ("c", "compare with another run (given on the command line)"), ("r", "reload from disk"),
            ("ctrl+p", "command palette"), ("?", "this help"), ("q", "quit"),
        ]
        text = Text("arcsynth view: keys\n\n", style="bold")
        for key, what in rows:
            text.append(f"{key:>16}  ", style="bold cyan")
            text.append(what + "\n")
        yield Static(text, id="help")


class JumpScreen(ModalScreen[str]):
    """A one-line prompt: a task id to jump to, or text to search for."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, placeholder: str) -> None:
        super().__init__()
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        yield Input(placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss("")


class RunScreen(Screen[None]):
    """The run: header, program counts by status, the task list."""

    BINDINGS = [
        Binding("j", "cursor(1)", "down", show=False), Binding("k", "cursor(-1)", "up", show=False),
        Binding("g", "edge(0)", "top", show=False), Binding("G", "edge(1)", "bottom", show=False),
        Binding("l", "open", "open", show=False),
        Binding("s", "sort", "sort"), Binding("f", "filter", "filter"), Binding("t", "jump", "task id"),
        Binding("slash", "app.search", "search"), Binding("c", "app.compare", "compare"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort_index = 0
        self.sort_reverse = False
        self.status_filter: str | None = None

    @property
    def ix(self) -> RunIndex:
        return self.app.ix  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        yield DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#tasks", DataTable)
        for name in TASK_COLUMNS:
            table.add_column(name, key=name)
        self.reload()
        table.focus()

    def reload(self) -> None:
        header = self.ix.header()
        note = f"   filter: {self.status_filter}" if self.status_filter else ""
        self.query_one("#run-header", Static).update(header_text(header, note))
        table = self.query_one("#tasks", DataTable)
        keep = table.cursor_row
        table.clear()
        rows = [r for r in self.ix.tasks() if self.status_filter in (None, r.status)]
        key = _SORT_KEYS[self.sort_index]
        rows.sort(key=key, reverse=self.sort_reverse)
        for r in rows:
            table.add_row(*_task_cells(r), key=r.task_id)
        if rows:
            table.move_cursor(row=min(keep, len(rows) - 1))

    def selected_task(self) -> str | None:
        table = self.query_one("#tasks", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_cursor(self, step: int) -> None:
        table = self.query_one("#tasks", DataTable)
        table.move_cursor(row=max(0, table.cursor_row + step))

    def action_edge(self, last: int) -> None:
        table = self.query_one("#tasks", DataTable)
        table.move_cursor(row=(table.row_count - 1) if last else 0)

    def action_open(self) -> None:
        task_id = self.selected_task()
        if task_id:
            self.app.push_screen(TaskScreen(task_id))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(TaskScreen(str(event.row_key.value)))

    def action_sort(self) -> None:
        # Each press moves to the next column; a full cycle flips the order.
        self.sort_index = (self.sort_index + 1) % len(TASK_COLUMNS)
        if self.sort_index == 0:
            self.sort_reverse = not self.sort_reverse
        self.notify(f"sorted by {TASK_COLUMNS[self.sort_index]}{' (reversed)' if self.sort_reverse else ''}")
        self.reload()

    def action_filter(self) -> None:
        present = [s for s in TASK_STATUSES if any(r.status == s for r in self.ix.tasks())]
        options = [None, *present]
        self.status_filter = options[(options.index(self.status_filter) + 1) % len(options)] if self.status_filter in options else None
        self.reload()

    def action_jump(self) -> None:
        def go(value: str | None) -> None:
            if not value:
                return
            ids = [r.task_id for r in self.ix.tasks()]
            match = next((t for t in ids if t == value), None) or next((t for t in ids if t.startswith(value)), None)
            if match is None:
                self.notify(f"no task id starts with {value!r}", severity="warning")
                return
            self.status_filter = None
            self.reload()
            table = self.query_one("#tasks", DataTable)
            table.move_cursor(row=table.get_row_index(match))

        self.app.push_screen(JumpScreen("task id (a prefix is enough)"), go)


_SORT_KEYS = (
    lambda r: r.order,
    lambda r: r.status,
    lambda r: -1.0 if r.score is None else r.score,
    lambda r: r.programs,
    lambda r: -1.0 if r.best_train_accuracy is None else r.best_train_accuracy,
    lambda r: r.tokens,
    lambda r: r.wall_s or 0.0,
)


def _task_cells(r: Any) -> list[Any]:
    colour = {"solved": "green", "train-solved": "yellow", "error": "red", "running": "cyan", "killed": "red"}.get(r.status, "")
    acc = "-" if r.best_train_accuracy is None else f"{r.best_train_accuracy:.0%}"
    score = "-" if r.score is None else f"{r.score:g}"
    return [r.task_id, Text(r.status, style=colour), score, str(r.programs), acc, str(r.tokens), f"{r.wall_s or 0:.1f}s"]


class TaskScreen(Screen[None]):
    """One task: grids, candidates by round with their parents, the selected candidate in full."""

    BINDINGS = [
        Binding("escape,h", "app.pop_screen", "back"),
        Binding("j", "move(1)", "down", show=False), Binding("k", "move(-1)", "up", show=False),
        Binding("g", "edge(0)", "first", show=False), Binding("G", "edge(1)", "last", show=False),
        Binding("slash", "app.search", "search"), Binding("n", "app.next_match(1)", "next match"),
        Binding("N", "app.next_match(-1)", "previous match"),
    ]

    def __init__(self, task_id: str, program_id: str | None = None) -> None:
        super().__init__()
        self.task_id = task_id
        self.program_id = program_id

    @property
    def ix(self) -> RunIndex:
        return self.app.ix  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(id="task-header")
        with Horizontal():
            tree: Tree[str] = Tree("candidates", id="lineage")
            tree.show_root = False
            yield tree
            with VerticalScroll(id="detail"):
                yield Static(id="grids")
                yield Static(id="program")
                yield Static(id="pairs")
                with Collapsible(title="prompt", collapsed=True, id="prompt-box"):
                    yield Static(id="prompt")
                with Collapsible(title="completion", collapsed=True, id="completion-box"):
                    yield Static(id="completion")
                with Collapsible(title="REPL conversation", collapsed=False, id="conversation-box"):
                    yield Static(id="conversation")
                yield Static(id="votes")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#lineage", Tree).focus()

    def reload(self) -> None:
        detail = self.ix.task(self.task_id)
        row = detail.row
        self.query_one("#task-header", Static).update(Text.assemble(
            (f"task {row.task_id}  ", "bold"), (row.status, "bold"),
            f"   score {'-' if row.score is None else f'{row.score:g}'}   programs {row.programs}   passing {row.passing}"
            f"   tokens {row.tokens}" + (f"   {detail.reason}" if detail.reason else ""),
        ))
        self.query_one("#grids", Static).update(grids_renderable(detail.grids, detail.grids_error))
        self.query_one("#votes", Static).update(Text.assemble(votes_text(detail.votes), "\n", attempts_text(detail.attempts)))
        tree = self.query_one("#lineage", Tree)
        tree.clear()
        tree.root.expand()
        by_id = {c.program_id: c for c in detail.candidates}
        children = detail.children()
        placed: set[str] = set()

        def add(node: Any, pid: str) -> None:
            c = by_id[pid]
            kids = [k for k in children.get(pid, []) if k in by_id and k not in placed]
            placed.update(kids)
            child = node.add(candidate_label(c), data=pid, expand=True, allow_expand=bool(kids))
            for k in kids:
                add(child, k)

        for rnd, cands in sorted(detail.rounds().items()):
            roots = [c.program_id for c in cands if not (set(c.parent_ids) & by_id.keys()) and c.program_id not in placed]
            if not roots:
                continue
            branch = tree.root.add(f"round {rnd}", expand=True)
            placed.update(roots)
            for pid in roots:
                add(branch, pid)
        if detail.conversations:
            # REPL attempts: one node each, the submitted program (if any) selected through it.
            branch = tree.root.add("REPL attempts", expand=True)
            for conv in detail.conversations:
                label = Text.assemble((conv.conversation.rpartition("/")[2], "bold"),
                                      f" {conv.outcome}, {conv.turns} turns, {conv.tool_calls} calls")
                if conv.program_id in by_id:
                    label.append("  ").append(candidate_label(by_id[conv.program_id]))
                branch.add_leaf(label, data=CONVERSATION + conv.conversation)
        first = detail.candidates[0].program_id if detail.candidates else (
            CONVERSATION + detail.conversations[0].conversation if detail.conversations else None)
        target = self.program_id or first
        if target:
            self.show_candidate(target)
            # Lines are known once the tree is laid out.
            self.call_after_refresh(self._select_node, target)

    def _select_node(self, program_id: str) -> None:
        tree = self.query_one("#lineage", Tree)

        def walk(node: Any) -> Any:
            if node.data == program_id:
                return node
            for child in node.children:
                found = walk(child)
                if found is not None:
                    return found
            return None

        node = walk(tree.root)
        if node is not None:
            tree.move_cursor(node)

    def show_candidate(self, program_id: str) -> None:
        self.program_id = program_id
        box = self.query_one("#conversation-box", Collapsible)
        conversation = None
        if program_id.startswith(CONVERSATION):
            conversation = self.ix.conversation(self.task_id, program_id[len(CONVERSATION):])
            program_id = conversation.summary.program_id or ""
        elif _REPL_PROGRAM.search(program_id):
            conversation = self.ix.conversation(self.task_id, program_id.rpartition("/t")[0])
        box.display = conversation is not None
        if conversation is not None:
            self.query_one("#conversation", Static).update(conversation_text(conversation))
        if not program_id:  # a conversation that submitted nothing
            for name in ("#program", "#pairs", "#prompt", "#completion"):
                self.query_one(name, Static).update("")
            return
        cand = self.ix.candidate(self.task_id, program_id)
        self.query_one("#program", Static).update(program_renderable(cand))
        self.query_one("#pairs", Static).update(pairs_renderable(cand.pairs))
        prompt = "\n\n".join(f"[{m.role}]" + (f" ({fold_line(m.reasoning)} of reasoning folded)" if m.reasoning else "")
                               + f"\n{m.content}" for m in cand.prompt) or "(no prompt recorded)"
        self.query_one("#prompt", Static).update(Text(prompt))
        self.query_one("#completion", Static).update(Text(_fold_reasoning(cand.completion or "(no completion recorded)")))

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if isinstance(event.node.data, str) and event.node.data != self.program_id:
            self.show_candidate(event.node.data)

    def action_move(self, step: int) -> None:
        tree = self.query_one("#lineage", Tree)
        (tree.action_cursor_down if step > 0 else tree.action_cursor_up)()

    def action_edge(self, last: int) -> None:
        tree = self.query_one("#lineage", Tree)
        (tree.action_scroll_end if last else tree.action_scroll_home)()
        tree.cursor_line = (tree.last_line if last else 0)


CONVERSATION = "conversation:"
"""Tree node data of a REPL attempt (the rest is its id)."""
_REPL_PROGRAM = re.compile(r"/x\d+/t\d+/c\d+$")


def fold_line(reasoning: str) -> str:
    return f"{len(reasoning.split())} words"


def conversation_text(c: Any) -> Text:
    """A REPL attempt turn by turn: replies with their reasoning folded to one line, tool calls and results."""
    s = c.summary
    out = Text.assemble((f"{s.conversation}: {s.outcome}", "bold"),
                        f", {s.turns} turns, {s.tool_calls} tool calls, {s.completion_tokens} tokens, "
                        f"{s.sandbox_cpu_s:.2f}s sandbox CPU\n")
    for k, t in enumerate(c.turns):
        out.append(f"\n-- turn {k} ({t.completion_tokens} tokens, {t.finish_reason})\n", style="bold")
        if t.reasoning:
            out.append(f"[reasoning: {fold_line(t.reasoning)} folded]\n", style="dim")
        out.append(_fold_reasoning(t.text).rstrip() + "\n")
        for call in t.tool_calls:
            style = "green" if call.status == "ok" else "red"
            out.append(f"  > tool call {call.call}: {call.status}, {call.cpu_s:.3f}s CPU\n", style=style)
            if call.output:
                out.append("    " + call.output.rstrip().replace("\n", "\n    ") + "\n", style="dim")
            if call.grid is not None:
                out.append("    value: " + " / ".join("".join(map(str, row)) for row in call.grid) + "\n", style="dim")
    return out


def _fold_reasoning(text: str) -> str:
    """A model's <think> block folded to one line: the program and the answer stay in view."""
    import re

    def fold(m: "re.Match[str]") -> str:
        body = m.group(1)
        return f"<think> ({len(body.split())} words of reasoning folded) </think>"

    return re.sub(r"<think>(.*?)</think>", fold, text, flags=re.S)


class SearchScreen(Screen[None]):
    """Matches of a search in prompts, completions and programs."""

    BINDINGS = [Binding("escape,h", "app.pop_screen", "back"), Binding("j", "cursor(1)", "down", show=False),
                Binding("k", "cursor(-1)", "up", show=False)]

    def __init__(self, query: str, hits: list[Any]) -> None:
        super().__init__()
        self.query_text, self.hits = query, hits

    def compose(self) -> ComposeResult:
        yield Static(Text(f"{len(self.hits)} match{'es' if len(self.hits) != 1 else ''} of {self.query_text!r}", style="bold"), id="search-header")
        yield DataTable(id="hits", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hits", DataTable)
        table.add_columns("task", "program", "in", "text")
        for i, h in enumerate(self.hits):
            table.add_row(h.task_id, h.program_id or h.request_id or "-", h.where, Text(h.snippet.replace("\n", " ")), key=str(i))
        table.focus()

    def action_cursor(self, step: int) -> None:
        table = self.query_one("#hits", DataTable)
        table.move_cursor(row=max(0, table.cursor_row + step))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_hit(int(str(event.row_key.value)))  # type: ignore[attr-defined]


class CompareScreen(Screen[None]):
    """Two runs of the same tasks side by side: what each solved, and how many programs differ."""

    BINDINGS = [Binding("escape,h", "app.pop_screen", "back"), Binding("j", "cursor(1)", "down", show=False),
                Binding("k", "cursor(-1)", "up", show=False)]

    def __init__(self, other: RunIndex) -> None:
        super().__init__()
        self.other = other

    def compose(self) -> ComposeResult:
        yield Static(id="compare-header")
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        a, b = self.app.ix, self.other  # type: ignore[attr-defined]
        ha, hb = a.header(), b.header()
        self.query_one("#compare-header", Static).update(Text.assemble(
            ("A ", "bold"), f"{ha.name} ({ha.path}): solved {ha.solved}, score {ha.score if ha.score is not None else '-'}\n",
            ("B ", "bold"), f"{hb.name} ({hb.path}): solved {hb.solved}, score {hb.score if hb.score is not None else '-'}",
        ))
        table = self.query_one("#compare", DataTable)
        table.add_columns("task", "A", "B", "A programs", "B programs", "only in A", "only in B")
        rows_a = {r.task_id: r for r in a.tasks()}
        rows_b = {r.task_id: r for r in b.tasks()}
        for tid in sorted(rows_a.keys() | rows_b.keys()):
            ra, rb = rows_a.get(tid), rows_b.get(tid)
            only_a, only_b = _program_difference(a, b, tid) if ra and rb else ("-", "-")
            mark = ""
            if ra and rb and (ra.status == "solved") != (rb.status == "solved"):
                mark = "green" if ra.status == "solved" else "red"
            table.add_row(Text(tid, style=mark), ra.status if ra else "-", rb.status if rb else "-",
                          str(ra.programs) if ra else "-", str(rb.programs) if rb else "-", only_a, only_b)
        table.focus()

    def action_cursor(self, step: int) -> None:
        table = self.query_one("#compare", DataTable)
        table.move_cursor(row=max(0, table.cursor_row + step))


def _program_difference(a: RunIndex, b: RunIndex, task_id: str) -> tuple[str, str]:
    """How many distinct program sources each run has that the other lacks, for one task."""
    def sources(ix: RunIndex) -> set[str]:
        out = set()
        for c in ix.task(task_id).candidates:
            if c.status not in ("no_code", "syntax_error", "no_transform"):
                src = ix.candidate(task_id, c.program_id).source
                if src:
                    out.add(src.strip())
        return out

    sa, sb = sources(a), sources(b)
    return str(len(sa - sb)), str(len(sb - sa))


class ViewerApp(App[None]):
    """The trace viewer of one run, or of two runs to compare."""

    TITLE = "arcsynth view"
    CSS = """
    #run-header, #task-header, #search-header, #compare-header { padding: 0 1; background: $boost; }
    #lineage { width: 42; border-right: solid $primary; }
    #detail { padding: 0 1; }
    #help { padding: 1 2; background: $panel; border: round $primary; width: 70; height: auto; }
    HelpScreen, JumpScreen { align: center middle; }
    #prompt-input { width: 60; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"), Binding("question_mark", "help", "help"), Binding("r", "reload", "reload"),
    ]

    def __init__(self, run_dir: Path, compare_dir: Path | None = None, *, refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self.ix = RunIndex.open(run_dir)
        self.other = RunIndex.open(compare_dir) if compare_dir is not None else None
        self.refresh_s = refresh_s
        self.hits: list[Any] = []
        self.hit_pos = -1

    def on_mount(self) -> None:
        self.push_screen(RunScreen())
        self.set_interval(self.refresh_s, self.follow)

    def on_unmount(self) -> None:
        self.ix.close()
        if self.other is not None:
            self.other.close()

    def follow(self) -> None:
        """Pick up events appended to a run being written; redraw the screen on show."""
        if self.ix.refresh():
            self._redraw()

    def _redraw(self) -> None:
        screen = self.screen
        if isinstance(screen, (RunScreen, TaskScreen)):
            screen.reload()

    def action_reload(self) -> None:
        self.ix.refresh()
        self._redraw()
        self.notify("reloaded")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_search(self) -> None:
        def go(query: str | None) -> None:
            if not query:
                return
            self.hits = self.ix.search(query)
            self.hit_pos = -1
            self.push_screen(SearchScreen(query, self.hits))

        self.push_screen(JumpScreen("search prompts, completions and programs"), go)

    def open_hit(self, pos: int) -> None:
        if not self.hits:
            return
        self.hit_pos = pos % len(self.hits)
        hit = self.hits[self.hit_pos]
        self.push_screen(TaskScreen(hit.task_id, hit.program_id))

    def action_next_match(self, step: int) -> None:
        if not self.hits:
            self.notify("no search yet: press / to search", severity="warning")
            return
        if isinstance(self.screen, TaskScreen):
            self.pop_screen()
        self.open_hit(self.hit_pos + step)

    def action_compare(self) -> None:
        if self.other is None:
            self.notify("give a second run directory: arcsynth view RUN_A RUN_B", severity="warning")
            return
        self.push_screen(CompareScreen(self.other))
