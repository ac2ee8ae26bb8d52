"""REPL conversations in the run index, `arcsynth show` and the Textual viewer, on a real
run recorded with a scripted REPL model (test double) and the real sandbox."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Tree

from recorded_run import make_scripted_run, source_config
from scripted_backend import ROT180_OTHER, ScriptedReplBackend, run, submit
from viewer.app import TaskScreen, ViewerApp
from viewer.index import RunIndex

TASK = "66e6c45b"
ROOT = Path(__file__).resolve().parents[2]
THOUGHT = "The colours move outwards to the corners, I think, so let me look at the grid first."


def model(rid, turn, messages):
    if turn < 0:
        return ROT180_OTHER
    attempt = int(rid.rpartition("/x")[2].split("/")[0])
    if attempt == 1:
        return "I am not sure."  # never submits
    if turn == 0:
        return run("print(train_inputs[0].shape)\ntrain_inputs[0]"), THOUGHT
    return submit("def transform(grid):\n    return grid")


@pytest.fixture(scope="module")
def repl_run(tmp_path_factory) -> Path:
    cfg = source_config([TASK], **{"search.mode": "'repl'", "search.repl_fraction": 0.5, "search.repl.max_turns": 2})
    return make_scripted_run(tmp_path_factory.mktemp("repl") / "run", cfg=cfg, backend=ScriptedReplBackend(model))


def test_the_index_lists_conversations_and_keeps_turns_out_of_the_candidates(repl_run):
    with RunIndex.open(repl_run) as ix:
        detail = ix.task(TASK)
        convs = {c.conversation.rpartition("/")[2]: c for c in detail.conversations}
        assert convs["x0"].outcome == "submitted" and convs["x0"].program_id == f"{TASK}/x0/t1/c0"
        assert convs["x1"].outcome == "max_turns" and convs["x1"].program_id is None
        ids = [c.program_id for c in detail.candidates]
        assert f"{TASK}/x0/t1/c0" in ids and not any("/x1/" in i or i.endswith("/x0/t0/c0") for i in ids)
        conv = ix.conversation(TASK, "x0")
        assert [t.reasoning for t in conv.turns] == [THOUGHT, None]
        call = conv.turns[0].tool_calls[0]
        assert call.status == "ok" and call.output.startswith("(") and call.grid is not None
        assert conv.opening[0].role == "system" and "SUBMIT" in conv.opening[0].content
        cand = ix.candidate(TASK, f"{TASK}/x0/t1/c0")
        assert cand.prompt_kind == "repl" and cand.prompt[2].reasoning == THOUGHT


def test_show_prints_the_attempts_and_a_conversation(repl_run):
    def show(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "arcsynth", "show", str(repl_run), *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    task = show(TASK)
    assert "REPL attempts" in task and "max_turns" in task and "x0/t1/c0" in task
    conv = show(TASK, "--conversation", "x0")
    assert "conversation 66e6c45b/x0: submitted" in conv
    assert "reasoning folded (17 words: The colours move" in conv and THOUGHT not in conv
    assert "tool call 0: ok" in conv and "print(train_inputs[0].shape)" in conv


async def test_the_viewer_shows_a_conversation_with_its_reasoning_folded(repl_run):
    from test_app import text_of

    app = ViewerApp(repl_run)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TaskScreen)
        tree = app.screen.query_one("#lineage", Tree)
        branch = next(n for n in tree.root.children if "REPL attempts" in str(n.label))
        assert [str(n.label).split()[0] for n in branch.children] == ["x0", "x1", "x2"]
        app.screen.show_candidate(branch.children[0].data)
        await pilot.pause()
        shown = text_of(app, "#conversation")
        assert "tool call 0: ok" in shown and "[reasoning: 17 words folded]" in shown and THOUGHT not in shown
        assert "x0/t1/c0" in text_of(app, "#program")
        app.screen.show_candidate(branch.children[1].data)  # submitted nothing
        await pilot.pause()
        assert "max_turns" in text_of(app, "#conversation") and text_of(app, "#program").strip() == ""
