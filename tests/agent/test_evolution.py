"""Search strategies end to end: the real loop, prompts and sandbox, with a scripted model
(:class:`ScriptedRecolourBackend`, a test double) on recolouring tasks built from real
ARC-AGI-1 inputs. The model is not under test here except in the first test, which
checks the double itself does what the strategies' tests rely on."""

from __future__ import annotations

import random
import re

import pytest
import pytest_asyncio

from agent.config import parse_config
from agent.loop import SolveContext, solve_task
from agent.benchmarks.recolour_model import ScriptedRecolourBackend, _sections, program_text, recolour_tasks
from agent.benchmarks.search import base_config
from arcsynth.grid import grid_to_list
from prompts import Parent, build_refine_prompt
from sandbox import Sandbox, SandboxConfig
from sandbox.verdict import CandidateVerdict, PairVerdict
from scripted_backend import MemoryRecorder

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def tasks():
    return recolour_tasks(6, seed=0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox():
    async with Sandbox(SandboxConfig(pair_timeout_s=5.0, candidate_timeout_s=20.0)) as sb:
        yield sb


def _verdict(rt, table):
    train = []
    for pair in rt.task.train:
        out = [[table.get(int(c), int(c)) for c in row] for row in pair.input]
        ok = out == grid_to_list(pair.output)
        acc = sum(a == b for ra, rb in zip(out, grid_to_list(pair.output)) for a, b in zip(ra, rb)) / pair.output.size
        train.append(PairVerdict(status="pass" if ok else "wrong", output=out, shape_match=True, cell_accuracy=acc))
    return CandidateVerdict(train=train, test=[], isolation=[])


async def test_the_scripted_model_fixes_what_a_prompt_shows_in_detail_and_nothing_else(tasks):
    rt = next(t for t in tasks if len(t.task.train) >= 3)
    wrong = {c: t % 9 + 1 for c, t in rt.table.items()}  # every colour wrong
    verdict = _verdict(rt, wrong)
    model = ScriptedRecolourBackend([rt], p_fix=1.0, p_noise=0.0)
    parent = Parent(source=program_text(wrong).strip().removeprefix("```python\n").removesuffix("```"), verdict=verdict)
    count = lambda m: sum(len(x.content.split()) for x in m)
    for focus in ([0], [1], None):
        prompt = build_refine_prompt(rt.task, [parent], max_prompt_tokens=100_000, count_tokens=count, focus=focus, shuffle_seed=3)
        user = prompt.messages[-1].content
        child = model.refine(rt, user, random.Random(0))
        shown = range(len(rt.task.train)) if focus is None else focus
        visible = {int(c) for i in shown for c in {int(x) for x in rt.task.train[i].input.flatten()} if c in rt.table}
        # Exactly the colours of the pairs detailed are corrected; the rest stay as they were.
        assert {c for c in rt.table if child[c] == rt.table[c]} == visible
        assert _sections(user)[0][0] == wrong


def config(strategy: str, programs: int, **overrides):
    base = base_config(programs, seed=0, concurrency=1)
    return parse_config(base.model_dump(mode="json"), [f"search.strategy={strategy}", *[f"{k}={v}" for k, v in overrides.items()]])


async def solve(rt, cfg, sandbox, **model):
    rec = MemoryRecorder()
    backend = ScriptedRecolourBackend([rt], **model)
    outcome = await solve_task(rt.task, SolveContext(config=cfg, backend=backend, sandbox=sandbox, recorder=rec))
    return outcome, rec


async def test_evolution_rejects_children_that_fix_none_of_the_failures_shown(tasks, sandbox):
    # p_know = 0: no first guess is right, so every passing program comes from refinement.
    rt = tasks[0]
    cfg = config("evolve", 96, **{"search.strategy.failures_shown": 1, "budget.stop_on_agreement": 2})
    outcome, rec = await solve(rt, cfg, sandbox, p_know=0.0, p_fix=0.5, p_noise=0.1, p_crash=0.0)
    verdicts = {e.program_id: e for e in rec.of("verdict")}
    choices = {e.request_id: e for e in rec.of("parents")}
    rejected = {e.program_id: e for e in rec.of("rejected")}
    assert rejected and choices
    for pid, v in verdicts.items():
        request_id = pid.rsplit("/c", 1)[0]
        choice = choices.get(request_id)
        if choice is None or choice.reject_pairs is None:
            assert pid not in rejected
            continue
        assert len(choice.reject_pairs) == 1  # a batch of one failure shown
        fixed = any(v.train[i]["status"] == "pass" for i in choice.reject_pairs)
        assert (pid in rejected) == (not fixed), pid
    # A rejected program is never a parent afterwards.
    for e in rec.of("prompt"):
        assert not set(e.parent_ids) & set(rejected)
    # Evolution got there: solved through refinement, with a recorded lineage.
    assert outcome.score == 1.0 and "agree" in outcome.stop_reason
    passing = [pid for pid, v in verdicts.items() if v.all_train_pass]
    assert passing and all("/r0/" not in pid for pid in passing)


async def test_crossover_combines_two_parents_once_the_population_allows(tasks, sandbox):
    rt = tasks[1]
    cfg = config("evolve", 64, **{"search.strategy.crossover_rate": 0.5, "budget.stop_on_agreement": "4"})
    outcome, rec = await solve(rt, cfg, sandbox, p_know=0.2)
    prompts = {e.request_id: e for e in rec.of("prompt")}
    crossovers = [e for e in rec.of("parents") if e.move == "crossover"]
    assert crossovers
    for e in rec.of("parents"):
        assert e.strategy == "evolve" and e.details["midpoint"] >= 0
        assert sum(p.probability for p in e.parents) <= 1.0 + 1e-9
        shown = [p.program_id for p in e.parents if p.shown]
        assert sorted(prompts[e.request_id].parent_ids) == sorted(shown)  # the trace names the parents the prompt shows
        text = prompts[e.request_id].messages[-1]["content"]
        if e.move == "crossover":
            assert e.population >= 3 and len(e.parents) == 2
            assert "Combine their ideas" in text and text.count("## Earlier program") == 2
        else:
            assert "Combine their ideas" not in text


async def test_a_task_stops_once_its_train_perfect_programs_agree(tasks, sandbox):
    rt = tasks[2]
    for strategy in ("rex", "evolve", "mix"):
        cfg = config(strategy, 400, **{"budget.stop_on_agreement": 3})
        outcome, rec = await solve(rt, cfg, sandbox)
        # Checked as each request's programs are verified: a request can bring several at once.
        agreeing = re.fullmatch(r"(\d+) passing programs agree on every test output", outcome.stop_reason)
        assert agreeing and int(agreeing.group(1)) >= 3, (strategy, outcome.stop_reason)
        assert outcome.n_programs < 400 and outcome.score == 1.0
        passing = [e for e in rec.of("verdict") if e.all_train_pass]
        outputs = {str([t.get("output") for t in e.test]) for e in passing}
        assert len(passing) >= 3 and len(outputs) == 1
