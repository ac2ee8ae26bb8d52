"""The library of solved programs: exported from runs, re-verified in the sandbox, offered to
first prompts by similarity."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.config import RunConfig
from agent.library import Library, LibraryEntry, LibraryError, read_library, signature, similarity
from agent.search import TaskSearch
from arcsynth.cli import app
from arcsynth.datasets import load_dataset
from arcsynth.task import task_from_json
from prompts import LibraryExample, build_first_prompt
from recorded_run import make_scripted_run, source_config
from sandbox import SandboxConfig, verify_program
from scripted_backend import MemoryRecorder, ScriptedBackend, fenced

MIRROR, FLIP_UD, ROTATE = "67a3c6ac", "68b16354", "3c9b0459"  # arc1 train: mirror left-right, flip upside down, rotate 180


@pytest.fixture(scope="module")
def arc1():
    return load_dataset("arc1:train")


@pytest.fixture(scope="module")
def library_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("library")
    ids = [MIRROR, FLIP_UD, ROTATE]
    programs = {
        MIRROR: [fenced("def transform(grid):\n    return [row[::-1] for row in grid]")],
        FLIP_UD: [fenced("def transform(grid):\n    out = list(grid)\n    out.reverse()\n    return out"),
                  fenced("def transform(grid):\n    return grid[::-1]")],
    }
    backend = ScriptedBackend(lambda rid, m, p: programs.get(rid.split("/")[0], [fenced("def transform(grid):\n    return grid")]))
    run = make_scripted_run(tmp / "run", ids, cfg=source_config(ids, **{"data.dataset": '"arc1:train"'}), backend=backend)
    out = tmp / "library.jsonl"
    r = CliRunner().invoke(app, ["export", str(run), "--library", str(out)])
    assert r.exit_code == 0, r.output
    assert "solved tasks" in r.output
    return out


def test_every_library_record_is_a_program_that_solves_its_task_in_the_sandbox(library_file):
    records = [json.loads(line) for line in library_file.read_text().splitlines()]
    # The scripted model writes the mirror and the flip (not the rotation): those two are solved,
    # each by its shortest passing program.
    assert sorted(r["task_id"] for r in records) == sorted([MIRROR, FLIP_UD])
    assert next(r for r in records if r["task_id"] == FLIP_UD)["source"].endswith("return grid[::-1]")
    for rec in records:
        task = task_from_json({"train": rec["task"]["train"], "test": [{"input": rec["task"]["train"][0]["input"]}]}, rec["task_id"])
        v = verify_program(rec["source"], task, SandboxConfig(workers=1, pair_timeout_s=5, candidate_timeout_s=20))
        assert v.all_train_pass, rec["program_id"]


def test_first_prompts_show_the_nearest_solved_puzzles_but_never_the_task_itself(library_file, arc1):
    cfg = RunConfig.model_validate({"prompt": {"library": str(library_file), "library_k": 1}})
    backend = ScriptedBackend(lambda *a: ["x"])
    from agent.loop import SolveContext

    search = TaskSearch(arc1.get(MIRROR), SolveContext(config=cfg, backend=backend, sandbox=None, recorder=MemoryRecorder()))
    # Its own record is left out: the nearest other solved puzzle is the flip.
    assert [e.task.id for e in search.library] == [FLIP_UD]
    prompt = search._first_prompt(None)
    text = prompt.messages[-1].content
    assert prompt.library_shown == [0] and "## Solved puzzle 1" in text and "grid[::-1]" in text
    assert text.index("## Solved puzzle 1") < text.index("Now the puzzle to solve.") < text.index("## Example 1")


def test_library_examples_are_the_first_thing_dropped_to_fit_the_budget(arc1):
    task, other = arc1.get(ROTATE), arc1.get(MIRROR)
    lib = [LibraryExample(other, "def transform(grid):\n    return [r[::-1] for r in grid]\n")] * 2
    count = lambda m: sum(len(x.content.split()) for x in m)
    full = build_first_prompt(task, max_prompt_tokens=100_000, count_tokens=count, library=lib)
    bare = build_first_prompt(task, max_prompt_tokens=100_000, count_tokens=count)
    fitted = build_first_prompt(task, max_prompt_tokens=full.prompt_tokens - 1, count_tokens=count, library=lib)
    assert full.library_shown == [0, 1] and fitted.library_shown == [0]
    assert fitted.shrink_steps and fitted.shrink_steps[0].startswith("dropped library example 2")
    assert "Solved puzzle" not in bare.messages[-1].content and bare.library_shown == []


def test_similarity_is_the_cosine_of_task_signatures(arc1):
    mirror, flip, rotate = (arc1.get(t) for t in (MIRROR, FLIP_UD, ROTATE))
    assert len(signature(mirror)) == 26
    assert similarity(signature(mirror), signature(mirror)) == pytest.approx(1.0)
    upscale = arc1.get("007bbfb7")  # 3x3 grids into 9x9 ones
    lib = Library([LibraryEntry(upscale, "upscale"), LibraryEntry(mirror, "mirror"), LibraryEntry(flip, "flip")])
    # Same-shape grid rearrangements are near each other, far from a change of size.
    assert similarity(signature(rotate), signature(flip)) > 0.8 > 0.1 > similarity(signature(rotate), signature(upscale))
    assert [e.source for e in lib.nearest(rotate, 2)] == ["flip", "mirror"]
    assert [e.source for e in lib.nearest(mirror, 3)] == ["flip", "upscale"]  # never itself


def test_a_bad_library_file_is_a_clear_error_naming_the_line(tmp_path):
    p = tmp_path / "lib.jsonl"
    p.write_text('{"task_id": "a", "source": "def transform(g): return g", "task": {"train": [{"input": [[1]], "output": [[1]]}]}}\nnot json\n')
    with pytest.raises(LibraryError) as err:
        read_library(p)
    assert f"{p.resolve()}, line 2" in str(err.value)
    with pytest.raises(LibraryError):
        read_library(tmp_path / "missing.jsonl")
