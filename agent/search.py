"""The moving parts of one task's search: prompts, requests, extraction, verification.

:func:`agent.loop.solve_task` reads as the algorithm; this module does the work.
Every step emits its trace event the moment it happens.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Iterable, Iterator, Literal

from agent.backends.base import Completion, Message, SamplingParams
from agent.budget import BudgetExhausted, EnoughPassing, StopSolving, TaskBudget
from agent.candidate import Behaviour, Candidate, CandidatePool
from agent.program import extract_program
from agent.seeds import derive_seed
from agent.strategies import ParentChoice, make_strategy
from agent.trace import CompletionEvent, ParentPick, ParentsEvent, ProgramEvent, PromptEvent, RejectedEvent, VerdictEvent
from arcsynth.task import Task
from prompts import LibraryExample, Parent, Prompt, PromptTooLong, build_first_prompt, build_refine_prompt

if TYPE_CHECKING:
    from agent.loop import SolveContext


class BackendFailed(Exception):
    """The model backend failed a request even after retries; the task ends in a TaskError."""

    def __init__(self, request_id: str, error: BaseException):
        self.reason = f"backend failed on {request_id}: {type(error).__name__}: {error}"
        super().__init__(self.reason)


async def gather_or_cancel(aws: Iterable[Awaitable[Any]]) -> list[Any]:
    """Like ``asyncio.gather``, but the first failure cancels the others.

    Returns the results in order once all succeed; otherwise re-raises the first
    exception after the others have been cancelled and have finished (so no
    sandbox run outlives the task that asked for it). Cancelling the caller
    cancels them all too. (asyncio.TaskGroup does this from Python 3.11.)
    """
    futs = [asyncio.ensure_future(a) for a in aws]
    if not futs:
        return []
    try:
        pending: set[asyncio.Future] = set(futs)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for fut in done:
                if not fut.cancelled() and fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
        return [f.result() for f in futs]
    finally:
        unfinished = [f for f in futs if not f.done()]
        for f in unfinished:
            f.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)


@dataclass
class Request:
    """One prompt sampled ``n`` times."""

    request_id: str
    round: int
    index: int
    prompt: Prompt
    params: SamplingParams
    parent_ids: list[str] = field(default_factory=list)
    reject_pairs: tuple[int, ...] | None = None
    """A child passing none of these train pairs (failures its prompt showed) is rejected as a parent."""

    @property
    def kind(self) -> Literal["first", "refine"]:
        return self.prompt.kind


class TaskSearch:
    """State of one task's search: budget, candidates, token counts."""

    def __init__(self, task: Task, ctx: "SolveContext"):
        self.task, self.ctx = task, ctx
        from agent.repl import split_budget

        b = ctx.config.budget
        self.repl_attempts, loop_programs = split_budget(ctx.config)
        """REPL conversations of this task (search.mode 'repl'); the loop makes at most ``loop_programs``."""
        self.budget = TaskBudget(
            max_programs=b.max_programs if not self.repl_attempts else loop_programs,
            max_completion_tokens=b.max_completion_tokens, max_wall_s=b.max_task_wall_s,
        )
        self.pool = CandidatePool()
        self.strategy = make_strategy(ctx.config.search.strategy)
        self.library = self._library_examples()
        self.n_programs = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def emit(self, event: Any) -> None:
        self.ctx.recorder.emit(event)

    # -- planning ----------------------------------------------------------------------

    def plan_round(self, round: int) -> Iterator[Request]:
        """The requests of one round, planned one at a time as they are sent.

        Raises BudgetExhausted when not even the first request fits; later ones
        that do not fit are simply not made.
        """
        self.budget.check_time()
        parents = self.pool.refinable()  # a snapshot: requests of this round do not refine each other
        if round == 0:
            count = self.ctx.config.budget.first_prompts
        else:
            count = self.ctx.config.budget.refine_prompts
            if count == 0:
                raise StopSolving("no refinement prompts configured")
        for q in range(count):
            try:
                request = self._plan_request(round, q, parents)
            except BudgetExhausted:
                if q == 0:
                    raise
                return
            yield request

    def _plan_request(self, round: int, q: int, parents: list[Behaviour]) -> Request:
        cfg = self.ctx.config
        seed = derive_seed(cfg.seed, self.task.id, round, q)
        s = cfg.sampling
        refining = round > 0 and bool(parents)
        n = self.budget.reserve((refining and self.strategy.samples(q)) or s.samples_per_prompt, s.max_tokens)
        params = SamplingParams(
            n=n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
            max_tokens=s.max_tokens, seed=seed, stop=list(s.stop),
        )
        request_id = f"{self.task.id}/r{round}/q{q}"
        parent_ids: list[str] = []
        reject: tuple[int, ...] | None = None
        try:
            prompt = None
            if refining:
                choice = self.strategy.choose(parents, k=cfg.prompt.parents_per_prompt, rng=random.Random(seed), request_index=q)
                if choice is not None:
                    try:
                        prompt = self._refine_prompt(choice, seed)
                    except PromptTooLong:
                        prompt = None  # parents too long to show: sample afresh instead
                if prompt is not None and choice is not None:
                    parent_ids = [choice.parents[j].representative.program_id for j in prompt.parents_shown]
                    reject = self._record_choice(request_id, choice, prompt)
            if prompt is None:
                # The canonical pair order for the very first prompt, shuffled for every other.
                prompt = self._first_prompt(None if (round, q) == (0, 0) else seed)
        except BaseException:
            self.budget.settle(n, s.max_tokens, programs=0, completion_tokens=0)
            raise
        return Request(request_id, round, q, prompt, params, parent_ids, reject)

    def _record_choice(self, request_id: str, choice: ParentChoice, prompt: Prompt) -> tuple[int, ...] | None:
        """Emit why these parents were chosen; return the train pairs a child must fix (rejection), if any."""
        shown = set(prompt.parents_shown)
        reject = None
        if choice.reject_non_fixing:
            focus = set(choice.focus) if choice.focus is not None else set(range(len(self.task.train)))
            failed = {i for j in shown for i, v in enumerate(choice.parents[j].representative.verdict.train) if v.status != "pass"}
            reject = tuple(sorted(focus & failed & set(prompt.train_pairs_shown))) or None
        self.emit(ParentsEvent(
            task_id=self.task.id, request_id=request_id, strategy=choice.strategy, move=choice.move,
            parents=[
                ParentPick(program_id=p.behaviour.representative.program_id, weight=p.weight, probability=p.probability,
                           fitness=p.fitness, times_refined=p.behaviour.times_refined, via=p.via, shown=j in shown)
                for j, p in enumerate(choice.picks)
            ],
            population=choice.population, island=choice.island, details=choice.details,
            focus=choice.focus, reject_pairs=list(reject) if reject is not None else None,
        ))
        return reject

    def _library_examples(self) -> list[LibraryExample]:
        p = self.ctx.config.prompt
        if not p.library:
            return []
        from agent.library import read_library

        return [LibraryExample(e.task, e.source) for e in read_library(p.library).nearest(self.task, p.library_k)]

    def _first_prompt(self, shuffle_seed: int | None) -> Prompt:
        p = self.ctx.config.prompt
        return build_first_prompt(
            self.task, encoding=p.encoding, max_prompt_tokens=p.max_prompt_tokens,
            count_tokens=self.ctx.backend.count_tokens, templates_dir=p.templates_dir,
            shuffle_seed=shuffle_seed, show_test_inputs=p.show_test_inputs, scipy_available=p.offer_scipy, observations=p.observations,
            code_only=p.style == "code", prefill=p.prefill, library=self.library,
        )

    def _refine_prompt(self, choice: ParentChoice, shuffle_seed: int) -> Prompt:
        p = self.ctx.config.prompt
        parents = [Parent(source=b.representative.source, verdict=b.representative.verdict) for b in choice.parents]
        return build_refine_prompt(
            self.task, parents, encoding=p.encoding, max_prompt_tokens=p.max_prompt_tokens,
            count_tokens=self.ctx.backend.count_tokens, max_parents=len(parents), templates_dir=p.templates_dir,
            shuffle_seed=shuffle_seed, show_test_inputs=p.show_test_inputs, scipy_available=p.offer_scipy, observations=p.observations,
            code_only=p.style == "code", prefill=p.prefill, focus=choice.focus, crossover=choice.move == "crossover",
        )

    # -- running -----------------------------------------------------------------------

    async def run_round(self, requests: Iterable[Request]) -> None:
        """Send every request as soon as its prompt is built; verify each as it returns.

        Returns when all are done; raises EnoughPassing or BudgetExhausted (wall
        time) early, cancelling the requests still waiting for the model.
        """
        pending: set[asyncio.Future] = set()
        try:
            for request in requests:
                pending.add(asyncio.ensure_future(self.run_request(request)))
                await asyncio.sleep(0)  # let it go out before the next prompt is built
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=self.budget.time_left(), return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    raise BudgetExhausted("max_task_wall_s")
                for fut in done:
                    fut.result()  # re-raises BackendFailed and sandbox errors
                self.check_enough()
        finally:
            for fut in pending:
                fut.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def check_enough(self) -> None:
        budget = self.ctx.config.budget
        target = budget.stop_after_passing
        if target is not None and self.pool.passing_programs >= target:
            raise EnoughPassing(f"{self.pool.passing_programs} programs pass every train pair")
        agree = budget.stop_on_agreement
        if agree is not None and self.pool.agreement() >= agree:
            raise EnoughPassing(f"{self.pool.agreement()} passing programs agree on every test output")

    async def run_request(self, req: Request) -> None:
        self.emit(PromptEvent(
            task_id=self.task.id, request_id=req.request_id, round=req.round, kind=req.kind,
            messages=[m.as_dict() for m in req.prompt.messages], prompt_tokens=req.prompt.prompt_tokens,
            sampling=req.params.model_dump(), parent_ids=req.parent_ids, shrink_steps=req.prompt.shrink_steps,
        ))
        max_tokens = req.params.max_tokens
        try:
            completions = await self._generate(req)
        except BaseException:
            self.budget.settle(req.params.n, max_tokens, programs=0, completion_tokens=0)
            raise
        spent = sum(c.completion_tokens for c in completions)
        self.budget.settle(req.params.n, max_tokens, programs=len(completions), completion_tokens=spent)
        self.completion_tokens += spent
        # The n completions share one prompt: count its tokens once.
        self.prompt_tokens += completions[0].prompt_tokens if completions else req.prompt.prompt_tokens
        checks = [self._record_completion(req, i, c) for i, c in enumerate(completions)]
        await gather_or_cancel([c for c in checks if c is not None])

    def record_program(self, program_id: str, order: tuple[int, int, int], text: str, finish_reason: str, *,
                       round: int, parent_ids: list[str], reject_pairs: tuple[int, ...] | None = None):
        """Extract the program of a reply and emit it; return its verification to await, if any.

        ``text`` is what the program is read from; its completion event was emitted already.
        """
        tid = self.task.id
        self.n_programs += 1
        ext = extract_program(text, finish_reason=finish_reason)
        common = dict(task_id=tid, program_id=program_id, round=round, parent_ids=parent_ids)
        if ext.status != "ok" or ext.source is None:
            self.emit(ProgramEvent(**common, status=ext.status, detail=ext.detail or "", source=ext.source))
            return None
        h = ext.source_hash()
        dup = self.pool.claim(h, program_id)
        self.emit(ProgramEvent(**common, status="ok", detail=ext.detail or "", source=ext.source, program_hash=h, duplicate_of=dup))
        if dup is not None:
            return None
        return self._verify(program_id, order, ext.source, h, parent_ids, reject_pairs)

    async def _generate(self, req: Request) -> list[Completion]:
        return await self.generate(req.prompt.messages, req.params, req.request_id)

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str) -> list[Completion]:
        """The backend's completions, with the configured retries; BackendFailed when they all fail."""
        retries = self.ctx.backend_retries
        for attempt in range(retries + 1):
            try:
                return await self.ctx.backend.generate(messages, params, request_id)
            except Exception as e:  # noqa: BLE001 - any failure of the backend is retried, then reported
                if attempt == retries:
                    raise BackendFailed(request_id, e) from e
                await asyncio.sleep(self.ctx.retry_backoff_s * (2**attempt))
        raise AssertionError("unreachable")

    def _record_completion(self, req: Request, i: int, c: Completion):
        """Emit the completion and its program; return the verification to await, if any."""
        tid = self.task.id
        self.emit(CompletionEvent(
            task_id=tid, request_id=req.request_id, index=i, text=c.text, prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens, finish_reason=c.finish_reason, latency_s=c.latency_s,
            endpoint=c.endpoint, reasoning=c.reasoning,
        ))
        # A prefilled reply (the opening of the code block) is part of the program text.
        last = req.prompt.messages[-1]
        text = last.content + c.text if last.role == "assistant" else c.text
        return self.record_program(f"{req.request_id}/c{i}", (req.round, req.index, i), text, c.finish_reason,
                                   round=req.round, parent_ids=req.parent_ids, reject_pairs=req.reject_pairs)

    async def _verify(self, program_id: str, order: tuple[int, int, int], source: str, h: str,
                      parent_ids: list[str], reject_pairs: tuple[int, ...] | None) -> None:
        verdict = await self.ctx.sandbox.run(source, self.task, check_test=False)
        rejected = reject_pairs is not None and not any(verdict.train[i].status == "pass" for i in reject_pairs)
        cand = Candidate(program_id, order, source, h, verdict, tuple(parent_ids), rejected)
        same = self.pool.add(cand)
        self.emit(VerdictEvent(
            task_id=self.task.id, program_id=program_id, all_train_pass=verdict.all_train_pass,
            pairs_passed=verdict.pairs_passed, train_accuracy=verdict.train_accuracy,
            train=[v.model_dump() for v in verdict.train], test=[v.model_dump() for v in verdict.test],
            isolation=verdict.isolation, rechecked=verdict.rechecked, behaviour_duplicate_of=same,
        ))
        if rejected:
            self.emit(RejectedEvent(task_id=self.task.id, program_id=program_id, parent_ids=parent_ids, failures=list(reject_pairs or ())))
