"""REPL attempts (``search.mode = "repl"``): the model runs Python on the task before it answers.

One attempt is a conversation. The opening prompt shows the task and a REPL in
which ``train_inputs``, ``train_outputs`` and ``test_inputs`` are defined (never
test outputs). Each reply of the model either runs code (```python blocks:
each block is one tool call, run in the sandbox like any candidate, see
``sandbox.cells``) and gets back what it printed, its error and the grid its last
line evaluated to, drawn in the prompt's encoding and cut to
``search.repl.max_output_chars``; or it submits (``SUBMIT`` on a line of its own,
then the program), which ends the attempt. With a server that does OpenAI function
calling (``model.tool_calls``; ``search.repl.protocol``) the same two moves are the
functions ``run_python(code)`` and ``submit(program)``, and each call's result comes
back as a tool message. The submitted program is extracted, verified and votes like
every other program of the task.

Limits per attempt (``search.repl``): turns, tool calls, completion tokens, and
sandbox CPU time; once no code can run any more the model is told to submit, and
a program in its last reply is taken as its answer. The task's own budgets
(completion tokens, wall time, stopping once enough programs pass) hold over
REPL attempts and the sample/refine loop together.

Every turn is a ``prompt`` event (kind ``repl``, the whole conversation so far)
and a ``completion`` event (with the model's reasoning when the server returns
it apart); every tool call a ``tool_call`` event; the end a ``repl_end`` event.
Request ids are ``<task>/x<attempt>/t<turn>``, so a recorded run replays like
any other: the sandbox is deterministic, so the replayed conversation asks the
same questions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.backends.base import Completion, Message, SamplingParams, ToolCall
from agent.config import RunConfig
from agent.program import code_blocks, extract_program
from agent.search import gather_or_cancel
from agent.seeds import derive_seed
from agent.trace import CompletionEvent, PromptEvent, ReplEndEvent, ToolCallEvent
from arcsynth.grid import grid_to_list
from prompts import build_repl_prompt, render_repl_nudge, render_repl_results

if TYPE_CHECKING:
    from agent.search import TaskSearch

TOOLS = [
    {"type": "function", "function": {
        "name": "run_python",
        "description": "Run Python code in the REPL (train_inputs, train_outputs, test_inputs and np are defined; "
                       "variables persist between runs). Returns what it printed, any error, and the value of its last line.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string", "description": "The code to run."}},
                       "required": ["code"]},
    }},
    {"type": "function", "function": {
        "name": "submit",
        "description": "Submit the final program, which defines transform(grid). Ends the session.",
        "parameters": {"type": "object", "properties": {"program": {"type": "string", "description": "The complete program."}},
                       "required": ["program"]},
    }},
]
"""The REPL's functions, for servers with OpenAI function calling (search.repl.protocol 'tools')."""

# "SUBMIT" alone on its line (markdown emphasis and a colon allowed).
_SUBMIT = re.compile(r"^[ \t]*[*_#]*[ \t]*SUBMIT[ \t]*:?[ \t]*[*_]*[ \t]*$", re.M)


def planned_programs(cfg: RunConfig) -> int:
    """The programs a task may make: budget.max_programs, or rounds x prompts x samples."""
    b, n = cfg.budget, cfg.sampling.samples_per_prompt
    return b.max_programs if b.max_programs is not None else n * (b.first_prompts + (b.rounds - 1) * b.refine_prompts)


def split_budget(cfg: RunConfig) -> tuple[int, int]:
    """(REPL attempts, programs left to the sample/refine loop) of one task.

    Each REPL attempt submits at most one program, so search.repl_fraction of the
    task's programs is that many attempts (at least one when the fraction is above 0).
    """
    total = planned_programs(cfg)
    if cfg.search.mode != "repl":
        return 0, total
    attempts = round(total * cfg.search.repl_fraction)
    if cfg.search.repl_fraction > 0:
        attempts = max(1, attempts)
    return attempts, max(0, total - attempts)


def _argument(call: ToolCall, name: str) -> str:
    """A string argument of a function call; ValueError saying what is wrong."""
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError as e:
        raise ValueError(f"the arguments of {call.name} are not JSON ({e})") from None
    value = args.get(name) if isinstance(args, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"{call.name} needs a string argument {name!r}")
    return value


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{len(text) - limit} more characters not shown]"


class ReplConversation:
    """One REPL attempt at a task (see the module docstring)."""

    def __init__(self, search: "TaskSearch", attempt: int):
        self.search, self.attempt = search, attempt
        self.cfg = search.ctx.config
        self.limits = self.cfg.search.repl
        self.task = search.task
        self.conversation = f"{self.task.id}/x{attempt}"
        self.tools = self.cfg.repl_protocol() == "tools"
        self.cells: list[str] = []
        """The successful cells so far: re-run before each new one, so that state persists."""
        self.tool_calls = 0
        self.cpu_s = 0.0
        self.completion_tokens = 0
        self.turns = 0
        self.grids = {
            "train_inputs": [grid_to_list(p.input) for p in self.task.train],
            "train_outputs": [grid_to_list(p.output) for p in self.task.train],
            "test_inputs": [grid_to_list(p.input) for p in self.task.test] if self.cfg.prompt.show_test_inputs else [],
        }

    def _end(self, outcome: str, program_id: str | None = None) -> None:
        """Record how the attempt ended (returns None, the attempt's result when it submits nothing)."""
        self.search.emit(ReplEndEvent(
            task_id=self.task.id, conversation=self.conversation, outcome=outcome, program_id=program_id,
            turns=self.turns, tool_calls=self.tool_calls, completion_tokens=self.completion_tokens,
            sandbox_cpu_s=round(self.cpu_s, 4),
        ))

    def _can_run(self) -> str:
        """Why no more code may run in this attempt, or ''."""
        if self.tool_calls >= self.limits.max_tool_calls:
            return f"the limit of {self.limits.max_tool_calls} code runs is reached"
        if self.cpu_s >= self.limits.max_sandbox_s:
            return f"the {self.limits.max_sandbox_s:g} s of sandbox time are used up"
        return ""

    async def run(self) -> "Submission | None":
        """Hold the conversation; the program it submitted (recorded and verified by the caller), if any."""
        s, p = self.search, self.cfg.prompt
        backend = s.ctx.backend
        limits = {"max_turns": self.limits.max_turns, "max_tool_calls": self.limits.max_tool_calls,
                  "max_output_chars": self.limits.max_output_chars}
        prompt = build_repl_prompt(
            self.task, encoding=p.encoding, max_prompt_tokens=p.max_prompt_tokens, count_tokens=backend.count_tokens,
            limits=limits, tools=self.tools, templates_dir=p.templates_dir, show_test_inputs=p.show_test_inputs, scipy_available=p.offer_scipy, observations=p.observations,
        )
        messages, encoding = list(prompt.messages), prompt.encoding
        per_attempt = self.limits.max_tokens
        for turn in range(self.limits.max_turns):
            request_id = f"{self.conversation}/t{turn}"
            tokens = prompt.prompt_tokens if turn == 0 else int(backend.count_tokens(messages))
            if tokens > p.max_prompt_tokens:
                return self._end("prompt_too_long")
            want = self.cfg.sampling.max_tokens
            if per_attempt is not None:
                want = min(want, per_attempt - self.completion_tokens)
                if want <= 0:
                    return self._end("max_tokens")
            completion = await self._ask(messages, request_id, turn, tokens, want)
            self.turns += 1
            messages.append(Message(role="assistant", content=completion.text, reasoning=completion.reasoning,
                                    tool_calls=completion.tool_calls))
            last = turn == self.limits.max_turns - 1
            forced = last or bool(self._can_run())
            if self.tools:
                submission = self._called_submission(request_id, turn, completion, forced=forced)
            else:
                submission = self._submission(request_id, turn, completion.text, completion.finish_reason, forced=forced)
            if submission is not None:
                self._end("submitted", submission.program_id)
                return submission
            if last:
                return self._end("max_turns")
            if self.tools:
                messages += await self._answer_calls(request_id, completion, encoding, turn)
            else:
                messages.append(Message(role="user", content=await self._reply_to(request_id, completion, encoding, turn)))
        return self._end("max_turns")

    async def _ask(self, messages: list[Message], request_id: str, turn: int, prompt_tokens: int, want: int):
        s, sampling = self.search, self.cfg.sampling
        max_tokens = s.budget.reserve_tokens(want)  # raises BudgetExhausted: the task's own budget is spent
        params = SamplingParams(
            n=1, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k, min_p=sampling.min_p,
            max_tokens=max_tokens, seed=derive_seed(self.cfg.seed, self.task.id, -1 - self.attempt, turn), stop=list(sampling.stop),
            tools=TOOLS if self.tools else None,
        )
        s.emit(PromptEvent(
            task_id=self.task.id, request_id=request_id, round=0, kind="repl", messages=[m.as_dict() for m in messages],
            prompt_tokens=prompt_tokens, sampling=params.model_dump(),
        ))
        spent = 0
        try:
            c = (await s.generate(list(messages), params, request_id))[0]
            spent = c.completion_tokens
        finally:
            s.budget.settle_tokens(max_tokens, spent)
        self.completion_tokens += c.completion_tokens
        s.completion_tokens += c.completion_tokens
        s.prompt_tokens += c.prompt_tokens
        s.emit(CompletionEvent(
            task_id=self.task.id, request_id=request_id, index=0, text=c.text, prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens, finish_reason=c.finish_reason, latency_s=c.latency_s, reasoning=c.reasoning,
            endpoint=c.endpoint, tool_calls=[t.model_dump() for t in c.tool_calls] if c.tool_calls else None,
        ))
        return c

    def _submission(self, request_id: str, turn: int, text: str, finish_reason: str, *, forced: bool) -> "Submission | None":
        """The program a reply submits, or None when it does not submit.

        A reply submits with the SUBMIT marker; when no more code can run (``forced``), a
        reply whose code defines ``transform`` is taken as the answer too.
        """
        marker = _SUBMIT.search(text)
        if marker is not None:
            answer = text[marker.end():]
        elif forced and any("def transform" in code for code, _ in code_blocks(text)):
            answer = text
        else:
            return None
        if marker is not None and extract_program(answer, finish_reason=finish_reason).status != "ok" and not forced:
            return None  # the model is told what was wrong and tries again
        order = (0, self.cfg.budget.first_prompts + self.attempt, turn)
        return Submission(f"{request_id}/c0", order, answer, finish_reason)

    def _called_submission(self, request_id: str, turn: int, completion: Completion, *, forced: bool) -> "Submission | None":
        """The program a reply submits through the submit function (function calling), or None.

        When no more code can run (``forced``), code it asked to run that defines
        ``transform`` is taken as its answer too.
        """
        calls = completion.tool_calls or []
        program = None
        for call in calls:
            if call.name == "submit":
                try:
                    program = _argument(call, "program")
                except ValueError:
                    continue
                if extract_program(program).status == "ok" or forced:
                    break
                program = None
        if program is None and forced:
            for call in calls:
                try:
                    code = _argument(call, "code") if call.name == "run_python" else ""
                except ValueError:
                    continue
                if "def transform" in code:
                    program = code
        if program is None:
            return None
        order = (0, self.cfg.budget.first_prompts + self.attempt, turn)
        fence = "````" if "```" in program else "```"
        return Submission(f"{request_id}/c0", order, f"{fence}python\n{program}\n{fence}\n", completion.finish_reason)

    async def _answer_calls(self, request_id: str, completion: Completion, encoding: str, turn: int) -> list[Message]:
        """One tool message per function call of the reply (function calling); a nudge when it made none."""
        tdir = self.cfg.prompt.templates_dir
        calls = completion.tool_calls or []
        if not calls:
            return [Message(role="user", content=render_repl_nudge("no_call", must_submit=bool(self._can_run()), tools=True,
                                                                   templates_dir=tdir))]
        turns_left = self.limits.max_turns - turn - 1
        out = []
        for call in calls:
            try:
                if call.name == "run_python":
                    result = await self._run_cell(request_id, _argument(call, "code"))
                    blocked = self._can_run()
                    note = ("Your next reply is the last: call submit in it." if turns_left == 1 else
                            f"No more code can run ({blocked}). Call submit with your complete program now." if blocked else "")
                    content = render_repl_results(
                        [result], encoding=encoding, calls_left=max(0, self.limits.max_tool_calls - self.tool_calls),
                        turns_left=turns_left, note=note, templates_dir=tdir)
                elif call.name == "submit":
                    detail = extract_program(_argument(call, "program")).detail or ""
                    content = render_repl_nudge("bad_submit", detail=detail.split("\n")[0], tools=True, templates_dir=tdir)
                else:
                    raise ValueError(f"there is no tool {call.name!r}; the tools are run_python and submit")
            except ValueError as e:
                content = render_repl_nudge("bad_call", detail=f"{e}.", tools=True, templates_dir=tdir)
            out.append(Message(role="tool", content=content, tool_call_id=call.id))
        return out

    async def _reply_to(self, request_id: str, completion, encoding: str, turn: int) -> str:
        """Run the reply's code blocks and say what they did; or say why nothing ran."""
        text = completion.text
        turns_left = self.limits.max_turns - turn - 1
        marker = _SUBMIT.search(text)
        if marker is not None:
            detail = extract_program(text[marker.end():], finish_reason=completion.finish_reason).detail or ""
            return render_repl_nudge("no_program", must_submit=bool(self._can_run()), detail=detail.split("\n")[0],
                                     templates_dir=self.cfg.prompt.templates_dir)
        blocks = code_blocks(text)
        closed = [code for code, done in blocks if done and code.strip()]
        if not closed:
            reason = "cut" if blocks and completion.finish_reason == "length" else "no_code"
            return render_repl_nudge(reason, must_submit=bool(self._can_run()), templates_dir=self.cfg.prompt.templates_dir)
        results = [await self._run_cell(request_id, code) for code in closed]
        blocked = self._can_run()
        note = ""
        if turns_left == 1:
            note = "Your next reply is the last: SUBMIT your program in it."
        elif blocked:
            note = f"No more code can run ({blocked}). Reply with SUBMIT and your complete program now."
        return render_repl_results(
            results, encoding=encoding, calls_left=max(0, self.limits.max_tool_calls - self.tool_calls),
            turns_left=turns_left, note=note, templates_dir=self.cfg.prompt.templates_dir,
        )

    async def _run_cell(self, request_id: str, code: str) -> dict:
        s, budget = self.search, self.limits.max_output_chars
        call = self.tool_calls
        blocked = self._can_run()
        if blocked:
            shown = {"status": "refused", "output": "", "grid": None, "error_type": None, "error": blocked}
            cpu = 0.0
        else:
            self.tool_calls += 1
            r = await s.ctx.sandbox.run_cell([*self.cells, code], self.grids, max_output=budget)
            cpu = r.cpu_s if r.status != "timeout" else max(r.cpu_s, s.ctx.config.sandbox.cell_timeout_s)
            self.cpu_s += cpu
            if r.status == "ok":
                self.cells.append(code)
            shown = {"status": r.status, "output": _cut(r.output, budget), "grid": r.grid,
                     "error_type": r.error_type or None, "error": r.error}
        s.emit(ToolCallEvent(
            task_id=self.task.id, conversation=self.conversation, request_id=request_id, call=call, code=code,
            status=shown["status"], output=shown["output"] or shown["error"] or "", grid=shown["grid"],
            error_type=shown["error_type"], cpu_s=round(cpu, 4),
        ))
        return shown


@dataclass(frozen=True)
class Submission:
    """The program a conversation submitted: recorded and verified once its wave is over."""

    program_id: str
    order: tuple[int, int, int]
    text: str
    """What the program is extracted from: the reply after its SUBMIT marker."""
    finish_reason: str


async def run_repl_attempts(search: "TaskSearch", attempts: int) -> str:
    """Run ``attempts`` conversations in waves of ``search.repl.parallel``; the stop reason of this part.

    The conversations of a wave run at once. Their programs are recorded in attempt
    order once the wave is over, and only then is the stopping rule checked: which of
    two identical programs is the duplicate, and where the task stops, then depend on
    what the model said and never on which conversation happened to finish first, so
    a recorded run replays exactly.
    """
    parallel = search.ctx.config.search.repl.parallel
    for start in range(0, attempts, parallel):
        wave = [ReplConversation(search, a) for a in range(start, min(attempts, start + parallel))]
        submissions = await gather_or_cancel([c.run() for c in wave])
        checks = [search.record_program(sub.program_id, sub.order, sub.text, sub.finish_reason, round=0, parent_ids=[])
                  for sub in submissions if sub is not None]
        await gather_or_cancel([c for c in checks if c is not None])
        search.check_enough()
    return f"{attempts} REPL attempt{'s' if attempts != 1 else ''} done" if attempts > 0 else ""
