"""Test doubles for the loop tests: a scripted model backend and an in-memory recorder.

The model is not under test in the loop tests, so :class:`ScriptedBackend` returns
canned completions chosen by a script from the request id and prompt. It records
when each request started and ended, so tests can prove what ran concurrently.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from agent.backends.base import BackendError, Completion, Message, SamplingParams

Script = Callable[[str, list[Message], SamplingParams], list[str]]
"""(request_id, messages, params) -> one text per completion (cycled to params.n)."""


@dataclass
class Call:
    """One request as the backend saw it; times are Unix times, like trace events'."""

    request_id: str
    messages: list[Message]
    params: SamplingParams
    started: float
    ended: float = 0.0


class ScriptedBackend:
    """TEST DOUBLE of a model backend: deterministic canned completions.

    ``delay_s`` makes each request take that long; ``serial`` lets one request
    run at a time, like the in-process transformers backend. ``fail`` names
    request ids (or a predicate) whose requests raise :class:`BackendError`.
    """

    name = "scripted"
    model_id = "scripted-test-double"

    def __init__(self, script: Script, *, delay_s: float = 0.0, serial: bool = False, fail: Callable[[str], bool] | None = None):
        self.script = script
        self.delay_s = delay_s
        self.serial = serial
        self.fail = fail or (lambda request_id: False)
        self.calls: list[Call] = []
        self._lock: asyncio.Lock | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def provenance(self) -> dict:
        return {"backend": self.name}

    def count_tokens(self, messages: list[Message]) -> int:
        return sum(len(m.content.split()) for m in messages)

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str) -> list[Completion]:
        if self.serial:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                return await self._generate(messages, params, request_id)
        return await self._generate(messages, params, request_id)

    async def _generate(self, messages: list[Message], params: SamplingParams, request_id: str) -> list[Completion]:
        call = Call(request_id, messages, params, time.time())
        self.calls.append(call)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            call.ended = time.time()  # also when cancelled (task stopped early)
        if self.fail(request_id):
            raise BackendError(f"scripted failure for {request_id}")
        texts = self.script(request_id, messages, params)
        prompt_tokens = self.count_tokens(messages)
        return [
            Completion(
                text=texts[i % len(texts)],
                prompt_tokens=prompt_tokens,
                completion_tokens=max(1, len(texts[i % len(texts)].split())),
                finish_reason="stop",
                latency_s=self.delay_s,
            )
            for i in range(params.n)
        ]


class MemoryRecorder:
    """TEST DOUBLE of the run recorder: keeps events and task results in lists."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.results: dict[str, Any] = {}

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def task_done(self, task_id: str, result_json: Any) -> None:
        self.results[task_id] = result_json

    def of(self, kind: str, task_id: str | None = None) -> list[Any]:
        return [e for e in self.events if e.event == kind and (task_id is None or getattr(e, "task_id", None) == task_id)]


def fenced(code: str) -> str:
    """A completion as a chat model writes it: a sentence, then a python block."""
    return f"The rule is simple.\n```python\n{code.strip()}\n```\n"


ROT180 = fenced("""
import numpy as np
def transform(grid):
    return np.rot90(np.array(grid), 2).tolist()
""")
ROT180_AGAIN = fenced("""
import numpy as np

def transform(grid):
    # the same program, spelled with other whitespace and a comment
    return np.rot90(np.array(grid), 2).tolist()
""")
ROT180_OTHER = fenced("""
import numpy as np
def transform(grid):
    return np.flipud(np.fliplr(np.array(grid))).tolist()
""")
FLIPLR = fenced("""
import numpy as np
def transform(grid):
    return np.fliplr(np.array(grid)).tolist()
""")
IDENTITY = fenced("""
def transform(grid):
    return [row[:] for row in grid]
""")
NO_CODE = "I think the grid is rotated but I am not sure how to write it."


ReplScript = Callable[[str, int, list[Message]], "str | tuple[str, str | None] | Completion"]
"""(request_id, turn, messages) -> the reply text, (text, reasoning), or a whole Completion (function calls)."""


class ScriptedReplBackend(ScriptedBackend):
    """TEST DOUBLE of a model in a REPL conversation: its replies are a script of turns.

    The script sees the whole conversation, so a turn can issue tool calls (python
    blocks) and react to their results in the next one (check what was printed,
    fix a failure, then SUBMIT). A reply may come with reasoning, as a reasoning
    model's server returns it apart from the text (``reasoning_content``).
    """

    name = "scripted-repl"
    model_id = "scripted-repl-test-double"

    def __init__(self, script: ReplScript, **kwargs: Any):
        self.repl_script = script
        self.reasoning: dict[str, str | None] = {}
        self.whole: dict[str, Completion] = {}
        super().__init__(self._texts, **kwargs)

    def _texts(self, request_id: str, messages: list[Message], params: SamplingParams) -> list[str]:
        turn = int(request_id.rsplit("/t", 1)[1]) if "/x" in request_id else -1
        out = self.repl_script(request_id, turn, messages)
        if isinstance(out, Completion):
            self.whole[request_id] = out
            return [out.text]
        text, thought = out if isinstance(out, tuple) else (out, None)
        self.reasoning[request_id] = thought
        return [text]

    async def _generate(self, messages: list[Message], params: SamplingParams, request_id: str) -> list[Completion]:
        completions = await super()._generate(messages, params, request_id)
        if request_id in self.whole:
            return [self.whole[request_id]]
        thought = self.reasoning.get(request_id)
        return [c.model_copy(update={"reasoning": thought}) for c in completions]


def submit(code: str) -> str:
    """A REPL reply that submits ``code``."""
    return f"The program works on every example.\nSUBMIT\n```python\n{code.strip()}\n```\n"


def run(code: str) -> str:
    """A REPL reply that runs ``code``."""
    return f"Let me look.\n```python\n{code.strip()}\n```\n"
