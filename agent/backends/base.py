"""One async interface over every way of getting completions from a model."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    """A function call the model made (OpenAI function calling)."""

    id: str
    name: str
    arguments: str = Field(description="The arguments as the model wrote them: JSON text, not yet parsed.")


class Message(BaseModel):
    """One chat message."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    reasoning: str | None = None
    """An assistant turn's reasoning, kept apart from its answer (``reasoning_content`` of
    OpenAI-compatible servers); passed back in multi-turn conversations (the REPL mode)."""
    tool_calls: list[ToolCall] | None = None
    """An assistant turn's function calls (REPL mode with function calling)."""
    tool_call_id: str | None = None
    """A ``tool`` message: the call it answers."""

    def as_dict(self) -> dict[str, Any]:
        """The message as recorded in the trace: role, content, and the other fields that are set."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning is not None:
            d["reasoning"] = self.reasoning
        if self.tool_calls is not None:
            d["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        return d


class SamplingParams(BaseModel):
    """Sampling settings of one request. Every field is recorded in the trace."""

    n: int = Field(1, ge=1, description="Completions to return for this prompt (the prompt is processed once where the backend allows).")
    temperature: float = Field(1.0, ge=0.0, description="Softmax temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=1, description="Keep only the k most likely tokens (vLLM extra on servers).")
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="Drop tokens below min_p x the top probability (vLLM extra).")
    max_tokens: int = Field(1024, ge=1, description="Hard cap on generated tokens per completion; always sent.")
    seed: int | None = Field(None, description="Per-request seed, derived from (run seed, task, round, request).")
    stop: list[str] = Field(default_factory=list, description="Stop strings.")
    tools: list[dict[str, Any]] | None = Field(
        None, description="OpenAI function-calling tools offered to the model (REPL mode with model.tool_calls); sent only when set.")

    def request_fields(self, *, n: int, seed: int | None) -> dict[str, Any]:
        """The settings as an engine or server takes them, for ``n`` samples with ``seed``.

        Optional settings appear only when set: strict servers reject fields they do not know.
        """
        fields: dict[str, Any] = {"n": n, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        if seed is not None:
            fields["seed"] = seed
        if self.top_k is not None:
            fields["top_k"] = self.top_k
        if self.min_p is not None:
            fields["min_p"] = self.min_p
        if self.stop:
            fields["stop"] = list(self.stop)
        if self.tools:
            fields["tools"] = list(self.tools)
        return fields


# Request fields a server backend sets itself: the sampling settings above, and what
# says which model, prompt and continuation. `model.extra_body` may not override them.
OWN_REQUEST_FIELDS = frozenset(SamplingParams.model_fields) | {
    "model", "messages", "prompt", "stream", "continue_final_message", "add_generation_prompt",
}


class Completion(BaseModel):
    """One sampled completion and what it cost."""

    text: str
    prompt_tokens: int = Field(description="Tokens in the prompt as the model saw it.")
    completion_tokens: int = Field(description="Tokens generated.")
    finish_reason: str = Field(description="'stop', 'length', ... as the backend reports it.")
    latency_s: float = Field(description="Wall time of the request that produced this completion.")
    endpoint: str | None = Field(None, description="The server that answered (URL without credentials), when base_url lists several.")
    reasoning: str | None = Field(
        None, description="Reasoning the server returned apart from the text (`reasoning_content`), if any.")
    tool_calls: list[ToolCall] | None = Field(None, description="Function calls the model made (function calling), if any.")


class BackendError(RuntimeError):
    """A backend cannot serve: model will not load, server unreachable, model not served."""


@runtime_checkable
class Backend(Protocol):
    """What the agent needs from a model.

    ``request_id`` identifies a request uniquely within a run, e.g.
    ``"<task>/r<round>/q<index>"``; the replay backend serves recorded completions by it.
    """

    name: str
    model_id: str

    async def start(self) -> None:
        """Load the model or check the server; raise :class:`BackendError` with a clear message."""

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str) -> list[Completion]:
        """Return exactly ``params.n`` completions for one chat prompt."""

    def count_tokens(self, messages: list[Message]) -> int:
        """Prompt size in the model's own tokens (chat template applied)."""

    def provenance(self) -> dict:
        """Model id, revision or weights hash, backend versions: recorded with the run."""

    async def close(self) -> None:
        """Release the model or connections."""
