"""A backend that serves the completions recorded in an earlier run's trace.

Replaying a run re-executes everything after the model (program extraction, sandbox,
verdicts, refinement prompts, voting) against the exact completions the model gave,
so the results must come out identical. Every request is matched by its
``request_id``, and its prompt messages must equal the recorded ones: a difference
means the code or config changed what the run asks, and replay stops with an error
that names the request instead of serving a completion to a different question.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agent.backends.base import BackendError, Completion, Message, SamplingParams
from agent.trace import CompletionEvent, PromptEvent, TokenCount, TraceError, read_trace


class ReplayDivergence(BackendError):
    """The replayed run asked something the recorded run did not."""


_CALL_FIELDS = ("tool_calls", "tool_call_id")


def _message_key(m: dict[str, Any]) -> list[Any]:
    key: list[Any] = [m["role"], m["content"]]
    calls = {k: m[k] for k in _CALL_FIELDS if m.get(k) is not None}
    if calls:  # function calls are part of the question; a message without them keys as it always did
        key.append(calls)
    return key


def _messages_key(messages: list[dict[str, Any]]) -> str:
    return json.dumps([_message_key(m) for m in messages], ensure_ascii=False)


def _plain(m: Message | dict[str, Any]) -> dict[str, Any]:
    if isinstance(m, dict):
        return m
    d = m.as_dict()
    d.pop("reasoning", None)
    return d


def messages_digest(messages: list[Message] | list[dict[str, Any]]) -> str:
    """SHA-256 of a chat prompt, the key of recorded token counts."""
    plain = [_plain(m) for m in messages]
    return hashlib.sha256(_messages_key(plain).encode("utf-8")).hexdigest()


class TokenCountRecorder:
    """Wraps a backend so that every ``count_tokens`` answer is recorded in the trace.

    Prompt builders count candidate prompts they then shrink and never send; a replay
    has no tokenizer, so it needs those counts from the trace to take the same
    decisions. Everything else is passed through to the wrapped backend.
    """

    def __init__(self, inner: Any, emit: Any):
        self._inner = inner
        self._emit = emit
        self._seen: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def count_tokens(self, messages: list[Message]) -> int:
        n = self._inner.count_tokens(messages)
        key = messages_digest(messages)
        if key not in self._seen:
            self._seen.add(key)
            self._emit(TokenCount(key=key, tokens=int(n)))
        return n


class _Recorded:
    __slots__ = ("prompt", "completions")

    def __init__(self, prompt: PromptEvent):
        self.prompt = prompt
        self.completions: list[CompletionEvent] = []


class ReplayBackend:
    """Serves ``run_dir``'s recorded completions by request id (see the module docstring).

    When a request id occurs more than once (a resumed run redid an unfinished task),
    the last recorded attempt is served, as for every other reader of a trace.
    """

    name = "replay"

    def __init__(self, run_dir: str | Path | None):
        if run_dir is None:
            raise BackendError("replay backend needs model.replay_dir (the run directory to replay)")
        self.run_dir = Path(run_dir)
        self.model_id = "replay"
        self._requests: dict[str, _Recorded] = {}
        self._counts: dict[str, int] = {}
        self._source_provenance: dict[str, Any] | None = None
        self.served = 0

    async def start(self) -> None:
        trace = self.run_dir / "trace.jsonl"
        if not trace.is_file():
            raise BackendError(f"cannot replay {self.run_dir}: it has no trace.jsonl")
        requests: dict[str, _Recorded] = {}
        try:
            events = list(read_trace(trace))
        except TraceError as e:
            raise BackendError(f"cannot replay {self.run_dir}: {e}") from None
        for ev in events:
            if isinstance(ev, PromptEvent):
                requests[ev.request_id] = _Recorded(ev)
                self._counts.setdefault(messages_digest(ev.messages), ev.prompt_tokens)
            elif isinstance(ev, CompletionEvent):
                rec = requests.get(ev.request_id)
                if rec is not None:
                    rec.completions.append(ev)
            elif isinstance(ev, TokenCount):
                self._counts[ev.key] = ev.tokens
        if not requests:
            raise BackendError(f"cannot replay {self.run_dir}: its trace records no prompts")
        self._requests = requests
        prov_path = self.run_dir / "provenance.json"
        try:
            self._source_provenance = json.loads(prov_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._source_provenance = None
        model = (self._source_provenance or {}).get("model") or {}
        if isinstance(model, dict) and (model.get("model_id") or model.get("model")):
            self.model_id = str(model.get("model_id") or model.get("model"))

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str) -> list[Completion]:
        rec = self._requests.get(request_id)
        if rec is None:
            raise ReplayDivergence(
                f"replay of {self.run_dir} diverged: request {request_id} was never made by the recorded run"
            )
        asked = [_plain(m) for m in messages]
        recorded = rec.prompt.messages
        if _messages_key(asked) != _messages_key(recorded):
            where = next(
                (i for i, (a, b) in enumerate(zip(asked, recorded)) if _message_key(a) != _message_key(b)),
                min(len(asked), len(recorded)),
            )
            raise ReplayDivergence(
                f"replay of {self.run_dir} diverged at request {request_id}: prompt message {where} differs "
                f"from the recorded one ({len(asked)} messages asked, {len(recorded)} recorded)"
            )
        if params.n > len(rec.completions):
            raise ReplayDivergence(
                f"replay of {self.run_dir} diverged at request {request_id}: {params.n} completions asked, "
                f"{len(rec.completions)} recorded"
            )
        ordered = sorted(rec.completions, key=lambda c: c.index)[: params.n]
        self.served += len(ordered)
        return [
            Completion(
                text=c.text,
                prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens,
                finish_reason=c.finish_reason,
                latency_s=c.latency_s,
                reasoning=c.reasoning,
                tool_calls=c.tool_calls,
            )
            for c in ordered
        ]

    def count_tokens(self, messages: list[Message]) -> int:
        n = self._counts.get(messages_digest(messages))
        if n is None:
            # Counting a prompt the recorded run never counted would need the recorded
            # model's tokenizer, which a replay deliberately does without.
            raise ReplayDivergence(
                f"replay of {self.run_dir} diverged: the size of a prompt the recorded run never built was asked for"
            )
        return n

    def provenance(self) -> dict[str, Any]:
        src = self._source_provenance or {}
        return {
            "backend": "replay",
            "model_id": self.model_id,
            "source_run": self.run_dir.resolve().name,
            "source_run_dir": str(self.run_dir),
            "source_config_hash": src.get("config_hash"),
            "source_model": src.get("model"),
        }

    async def close(self) -> None:
        self._requests = {}
