"""Building the chat prompts: the first attempt at a task and refinements.

A prompt must fit the model's context next to the completion it asks for, so
every prompt is counted in the model's own tokens and, when it is too long,
shrunk by a fixed sequence of steps, each recorded in ``Prompt.shrink_steps``:

first attempt
  0. drop library examples (solved similar puzzles), least similar first
  1. compact encoding (lossless: the same grids in fewer tokens)
  2. hide the test inputs
  3. drop train pairs, largest first, keeping at least one

refinement
  1. feedback detail ``full`` -> ``diff`` (the input and expected grids are
     already in the examples section)
  2. drop earlier programs, worst first, keeping the best one
  3. feedback detail ``diff`` -> ``summary``
  4. then the first-attempt steps

When even the smallest prompt is too long, :class:`PromptTooLong` says so with
the figures and the steps tried; the caller records it and skips the task.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Literal, Optional

from pydantic import BaseModel, Field

from agent.backends.base import Message
from arcsynth.grid import shape_str
from arcsynth.task import Task
from prompts.encodings import COMPACT_ENCODING, get_encoding
from prompts.feedback import FeedbackDetail, parent_feedback, score_line
from prompts.observations import observations as task_observations
from prompts.templating import render
from sandbox.verdict import CandidateVerdict

CountTokens = Callable[[list[Message]], int]


class PromptTooLong(Exception):
    """Even the smallest prompt for a task exceeds the token budget."""

    def __init__(self, task_id: str, tokens: int, budget: int, steps: list[str], reason: str = ""):
        self.task_id = task_id
        self.tokens = tokens
        self.budget = budget
        self.steps = list(steps)
        self.reason = reason or f"needs {tokens} tokens, budget is {budget}"
        tried = "; ".join(self.steps) if self.steps else "none"
        super().__init__(f"task {task_id}: prompt does not fit: {self.reason} (shrink steps tried: {tried})")

    def to_record(self) -> dict:
        """The JSON form written to the run trace."""
        return {"task_id": self.task_id, "tokens": self.tokens, "budget": self.budget, "steps": self.steps, "reason": self.reason}


class Parent(BaseModel):
    """An earlier program and its verdict, to be refined."""

    source: str = Field(description="The program's source code as it was run.")
    verdict: CandidateVerdict = Field(description="Its verdict on the task's train (and test) inputs.")


@dataclass(frozen=True)
class LibraryExample:
    """A solved puzzle shown as a worked example: its train pairs and a program that solves them."""

    task: Task
    source: str


class Prompt(BaseModel):
    """A rendered chat prompt and what went into it."""

    kind: Literal["first", "refine", "repl"] = Field(description="First attempt, refinement, or the opening of a REPL conversation.")
    task_id: str
    messages: list[Message] = Field(description="The chat messages, system first.")
    prompt_tokens: int = Field(description="Size of the messages in the model's own tokens (count_tokens).")
    encoding: str = Field(description="The grid encoding used after shrinking.")
    train_pairs_shown: list[int] = Field(description="Train pair indices in the order shown (after shuffling and shrinking).")
    test_inputs_shown: bool = Field(description="Whether the test inputs appear in the prompt.")
    parents_shown: list[int] = Field(
        default_factory=list, description="Indices into the `parents` argument of the programs shown, in the order shown."
    )
    feedback_detail: Optional[FeedbackDetail] = Field(None, description="full | diff | summary (refinement only).")
    library_shown: list[int] = Field(default_factory=list, description="Indices of the library examples shown (first prompts).")
    shrink_steps: list[str] = Field(default_factory=list, description="Every step taken to fit the budget, in order.")


@dataclass(frozen=True)
class _Plan:
    """What a prompt shows; shrinking replaces it step by step."""

    encoding: str
    shown: tuple[int, ...]  # train indices, display order
    show_tests: bool
    parents: tuple[int, ...] = ()  # indices into the best-first parent list
    detail: FeedbackDetail = "full"
    library: tuple[int, ...] = ()  # indices into the library examples, most similar first
    observations: bool = False  # state what the shown examples change (prompts.observations)


def _scipy_available() -> bool:
    return importlib.util.find_spec("scipy") is not None


def _pair_size(task: Task, i: int) -> int:
    p = task.train[i]
    return p.input.size + (p.output.size if p.output is not None else 0)


def _context(task: Task, plan: _Plan, scipy_available: bool, code_only: bool = False) -> dict:
    enc = get_encoding(plan.encoding)
    examples = []
    for k, i in enumerate(plan.shown, start=1):
        p = task.train[i]
        examples.append(
            {
                "number": k,
                "index": i,
                "input": enc.encode(p.input),
                "input_shape": shape_str(p.input),
                "output": enc.encode(p.output),
                "output_shape": shape_str(p.output),
            }
        )
    tests = []
    if plan.show_tests:
        for k, p in enumerate(task.test, start=1):
            tests.append({"number": k, "input": enc.encode(p.input), "input_shape": shape_str(p.input)})
    return {
        "task_id": task.id,
        "encoding": enc,
        "examples": examples,
        "hidden_examples": len(task.train) - len(plan.shown),
        "tests": tests,
        "scipy_available": scipy_available,
        "code_only": code_only,
        "observations": task_observations(task, plan.shown) if plan.observations else [],
    }


def _messages(system: str, user: str, system_message: bool, prefill: str | None = None) -> list[Message]:
    """The chat messages; a prefill is the start of the assistant's reply, which the model continues."""
    if system_message:
        out = [Message(role="system", content=system), Message(role="user", content=user)]
    else:
        out = [Message(role="user", content=f"{system}\n\n{user}")]
    if prefill:
        out.append(Message(role="assistant", content=prefill))
    return out


# --- shrink steps: each returns the smaller plan and a description, or None when it does not apply


def _compact_encoding(task: Task, plan: _Plan, parents: list[Parent]):
    if plan.encoding == COMPACT_ENCODING:
        return None
    return replace(plan, encoding=COMPACT_ENCODING), f"encoding {plan.encoding} -> {COMPACT_ENCODING}"


def _hide_tests(task: Task, plan: _Plan, parents: list[Parent]):
    if not plan.show_tests:
        return None
    return replace(plan, show_tests=False), f"hid the {len(task.test)} test input(s)"


def _drop_largest_pair(task: Task, plan: _Plan, parents: list[Parent]):
    if len(plan.shown) <= 1:
        return None
    # Largest first; on a tie drop the one shown later.
    pos = max(range(len(plan.shown)), key=lambda k: (_pair_size(task, plan.shown[k]), k))
    i = plan.shown[pos]
    p = task.train[i]
    shown = plan.shown[:pos] + plan.shown[pos + 1 :]
    return replace(plan, shown=shown), f"dropped train pair {i} ({shape_str(p.input)} -> {shape_str(p.output)})"


def _feedback_full_to_diff(task: Task, plan: _Plan, parents: list[Parent]):
    if plan.detail != "full":
        return None
    return replace(plan, detail="diff"), "feedback detail full -> diff"


def _drop_worst_parent(task: Task, plan: _Plan, parents: list[Parent]):
    if len(plan.parents) <= 1:
        return None
    j = plan.parents[-1]
    return replace(plan, parents=plan.parents[:-1]), f"dropped earlier program {len(plan.parents)} ({score_line(parents[j].verdict)})"


def _feedback_diff_to_summary(task: Task, plan: _Plan, parents: list[Parent]):
    if plan.detail != "diff":
        return None
    return replace(plan, detail="summary"), "feedback detail diff -> summary"


def _drop_library_example(task: Task, plan: _Plan, parents: list[Parent]):
    if not plan.library:
        return None
    return replace(plan, library=plan.library[:-1]), f"dropped library example {len(plan.library)}"


_FIRST_STEPS = (_drop_library_example, _compact_encoding, _hide_tests, _drop_largest_pair)
_REPL_STEPS = (_compact_encoding, _hide_tests, _drop_largest_pair)
_REFINE_STEPS = (_feedback_full_to_diff, _drop_worst_parent, _feedback_diff_to_summary) + _FIRST_STEPS


def _fit(
    kind: Literal["first", "refine", "repl"],
    task: Task,
    plan: _Plan,
    parents: list[Parent],
    render_plan: Callable[[_Plan], list[Message]],
    steps_available: tuple,
    budget: int,
    count_tokens: CountTokens,
) -> Prompt:
    """The prompt of the first plan, shrunk step by step, that fits ``budget``."""
    if budget <= 0:
        raise ValueError(f"max_prompt_tokens must be positive, got {budget}")
    steps: list[str] = []
    while True:
        messages = render_plan(plan)
        tokens = int(count_tokens(messages))
        if tokens <= budget:
            return Prompt(
                kind=kind,
                task_id=task.id,
                messages=messages,
                prompt_tokens=tokens,
                encoding=plan.encoding,
                train_pairs_shown=list(plan.shown),
                test_inputs_shown=plan.show_tests,
                parents_shown=list(plan.parents),
                feedback_detail=plan.detail if kind == "refine" else None,
                library_shown=list(plan.library),
                shrink_steps=steps,
            )
        for step in steps_available:
            shrunk = step(task, plan, parents)
            if shrunk is not None:
                plan, description = shrunk
                steps.append(f"{description} (was {tokens} tokens, budget {budget})")
                break
        else:
            raise PromptTooLong(
                task.id,
                tokens,
                budget,
                steps,
                reason=(
                    f"the smallest prompt ({len(plan.shown)} train pair(s), {plan.encoding} encoding"
                    + (f", {len(plan.parents)} earlier program(s) with {plan.detail} feedback" if plan.parents else "")
                    + f") needs {tokens} tokens, budget is {budget}"
                ),
            )


def _display_order(task: Task, shuffle_seed: int | None) -> tuple[int, ...]:
    order = list(range(len(task.train)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    return tuple(order)


def build_first_prompt(
    task: Task,
    *,
    encoding: str = "spaced",
    max_prompt_tokens: int,
    count_tokens: CountTokens,
    templates_dir: str | Path | None = None,
    shuffle_seed: int | None = None,
    show_test_inputs: bool = True,
    system_message: bool = True,
    scipy_available: bool | None = None,
    code_only: bool = False,
    prefill: str | None = None,
    library: list[LibraryExample] | None = None,
    observations: bool = False,
) -> Prompt:
    """The prompt for a first attempt at ``task``, shrunk to ``max_prompt_tokens``.

    ``shuffle_seed`` shuffles the train pair order (None keeps the task order);
    ``scipy_available`` defaults to whether scipy is importable here; ``library``
    (most similar first) are solved puzzles shown before the task as worked examples;
    ``observations`` states what the shown examples change (:mod:`prompts.observations`).
    Raises :class:`PromptTooLong`, ``UnknownEncoding`` or ``PromptTemplateError``.
    """
    get_encoding(encoding)  # an unknown name fails before any rendering
    scipy_ok = _scipy_available() if scipy_available is None else scipy_available
    library = list(library or [])
    plan = _Plan(encoding=encoding, shown=_display_order(task, shuffle_seed), show_tests=show_test_inputs,
                 library=tuple(range(len(library))), observations=observations)

    def render_plan(p: _Plan) -> list[Message]:
        ctx = _context(task, p, scipy_ok, code_only)
        enc = ctx["encoding"]
        ctx["library"] = [
            {
                "number": k,
                "pairs": [
                    {"input": enc.encode(q.input), "input_shape": shape_str(q.input),
                     "output": enc.encode(q.output), "output_shape": shape_str(q.output)}
                    for q in library[j].task.train
                ],
                "source": library[j].source.strip(),
                "fence": "````" if "```" in library[j].source else "```",
            }
            for k, j in enumerate(p.library, start=1)
        ]
        return _messages(render("system.j2", templates_dir, **ctx), render("first.j2", templates_dir, **ctx), system_message, prefill)

    return _fit("first", task, plan, [], render_plan, _FIRST_STEPS, max_prompt_tokens, count_tokens)


def rank_parents(parents: list[Parent]) -> list[int]:
    """Indices of ``parents`` best first: most train pairs passed, then mean cell accuracy (stable)."""
    return sorted(range(len(parents)), key=lambda j: (-parents[j].verdict.pairs_passed, -parents[j].verdict.train_accuracy))


def build_refine_prompt(
    task: Task,
    parents: list[Parent],
    *,
    encoding: str = "spaced",
    max_prompt_tokens: int,
    count_tokens: CountTokens,
    max_parents: int = 1,
    feedback_detail: FeedbackDetail = "full",
    templates_dir: str | Path | None = None,
    shuffle_seed: int | None = None,
    show_test_inputs: bool = True,
    system_message: bool = True,
    scipy_available: bool | None = None,
    code_only: bool = False,
    prefill: str | None = None,
    focus: list[int] | None = None,
    crossover: bool = False,
    observations: bool = False,
) -> Prompt:
    """A refinement prompt: the task, then up to ``max_parents`` earlier programs
    (best first) each with its source, train score and per-pair feedback.

    ``focus`` (train indices) details the feedback of those pairs only (a batch
    of failure cases), the others in one line each; ``crossover`` asks the model
    to combine what the programs get right rather than to fix the best one.
    """
    if not parents:
        raise ValueError(f"task {task.id}: a refinement prompt needs at least one earlier program")
    if max_parents < 1:
        raise ValueError(f"max_parents must be at least 1, got {max_parents}")
    for j, parent in enumerate(parents):
        if len(parent.verdict.train) != len(task.train):
            raise ValueError(
                f"task {task.id}: earlier program {j} has {len(parent.verdict.train)} train verdicts, the task has {len(task.train)} train pairs"
            )
    get_encoding(encoding)
    scipy_ok = _scipy_available() if scipy_available is None else scipy_available
    ranked = tuple(rank_parents(parents)[:max_parents])
    plan = _Plan(
        encoding=encoding,
        shown=_display_order(task, shuffle_seed),
        show_tests=show_test_inputs,
        parents=ranked,
        detail=feedback_detail,
        observations=observations,
    )

    def render_plan(p: _Plan) -> list[Message]:
        ctx = _context(task, p, scipy_ok, code_only)
        enc = ctx["encoding"]
        ctx["parents"] = [
            {
                "number": k,
                "source": parents[j].source.strip(),
                # A source that itself contains ``` needs a longer fence to stay one block.
                "fence": "````" if "```" in parents[j].source else "```",
                "score": score_line(parents[j].verdict),
                "feedback": parent_feedback(task, parents[j].verdict, enc, shown=list(p.shown), detail=p.detail, focus=focus),
            }
            for k, j in enumerate(p.parents, start=1)
        ]
        ctx["crossover"] = crossover and len(p.parents) > 1
        return _messages(render("system.j2", templates_dir, **ctx), render("refine.j2", templates_dir, **ctx), system_message, prefill)

    return _fit("refine", task, plan, parents, render_plan, _REFINE_STEPS, max_prompt_tokens, count_tokens)


# --- REPL conversations (search.mode 'repl')


def build_repl_prompt(
    task: Task,
    *,
    encoding: str = "spaced",
    max_prompt_tokens: int,
    count_tokens: CountTokens,
    limits: dict,
    tools: bool = False,
    templates_dir: str | Path | None = None,
    show_test_inputs: bool = True,
    system_message: bool = True,
    scipy_available: bool | None = None,
    observations: bool = False,
) -> Prompt:
    """The opening of a REPL conversation: the task, the REPL and its ``limits``, how to submit.

    The examples keep the task's order, so that "Example k" is ``train_inputs[k-1]``
    in the REPL (which holds every train pair, also those dropped here for space).
    ``limits``: ``max_turns``, ``max_tool_calls``, ``max_output_chars``. ``tools``: the
    model calls functions (run_python, submit) instead of writing fenced blocks.
    """
    get_encoding(encoding)
    scipy_ok = _scipy_available() if scipy_available is None else scipy_available
    plan = _Plan(encoding=encoding, shown=_display_order(task, None), show_tests=show_test_inputs, observations=observations)

    def render_plan(p: _Plan) -> list[Message]:
        ctx = dict(_context(task, p, scipy_ok), limits=limits, tools=tools)
        return _messages(render("repl_system.j2", templates_dir, **ctx), render("repl_first.j2", templates_dir, **ctx), system_message)

    return _fit("repl", task, plan, [], render_plan, _REPL_STEPS, max_prompt_tokens, count_tokens)


def render_repl_results(results: list[dict], *, encoding: str, calls_left: int, turns_left: int, note: str = "",
                        templates_dir: str | Path | None = None) -> str:
    """The message that shows the model what its code blocks did.

    ``results``: per block ``status``, ``output`` (already cut to its budget), ``grid``
    (list of lists or None), ``error_type``, ``error``; grids are drawn in ``encoding``.
    """
    import numpy as np

    enc = get_encoding(encoding)
    shown = []
    for k, r in enumerate(results, start=1):
        grid = r.get("grid")
        arr = np.array(grid, dtype=np.uint8) if grid else None
        shown.append(dict(r, number=k, grid=enc.encode(arr) if arr is not None else None,
                          grid_shape=shape_str(arr) if arr is not None else None))
    return render("repl_result.j2", templates_dir, results=shown, calls_left=calls_left, turns_left=turns_left, note=note)


def render_repl_nudge(reason: str, *, must_submit: bool = False, detail: str = "", tools: bool = False,
                      templates_dir: str | Path | None = None) -> str:
    """What the model is told when its reply could not be used or time is up.

    ``reason``: no_code, no_program, cut (fenced blocks); no_call, bad_submit, bad_call (``tools``).
    """
    return render("repl_nudge.j2", templates_dir, reason=reason, must_submit=must_submit, detail=detail, tools=tools)
