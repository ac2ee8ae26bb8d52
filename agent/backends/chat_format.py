"""Turning chat messages into prompt text and tokens, and trimming completions at stop strings."""

from __future__ import annotations

import math
from typing import Any

from agent.backends.base import Message

# Characters per token of code-heavy English in common BPE vocabularies: only used when no
# tokenizer is at hand, and flagged as an estimate wherever it is reported.
CHARS_PER_TOKEN_ESTIMATE = 3.5


def as_dicts(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as chat APIs and templates take them.

    An assistant turn's reasoning goes back as ``reasoning_content``, the field that
    vLLM's and SGLang's OpenAI servers return it in and take it back in, and that
    reasoning models' chat templates (Qwen3, DeepSeek-R1, GPT-OSS) read; each
    template decides whether earlier turns' reasoning is shown to the model.
    """
    out = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.reasoning is not None and m.role == "assistant":
            d["reasoning_content"] = m.reasoning
        if m.tool_calls:
            d["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                               for c in m.tool_calls]
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


def ends_with_prefill(messages: list[Message]) -> bool:
    """The last message is the start of the assistant's reply, which the model continues."""
    return bool(messages) and messages[-1].role == "assistant"


def render_with_template(tokenizer: Any, messages: list[Message]) -> str:
    """Prompt text as the model's own chat template renders it, ready for the assistant turn.

    A trailing assistant message (a prefill such as the opening of a code block) is
    left open, so the model's completion continues it.
    """
    if ends_with_prefill(messages):
        return tokenizer.apply_chat_template(as_dicts(messages), tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(as_dicts(messages), tokenize=False, add_generation_prompt=True)


def render_plain(messages: list[Message]) -> str:
    """A model-neutral prompt for plain completions when no tokenizer (hence no template) is known.

    Each message becomes ``"<Role>: <content>"`` separated by blank lines, and the text ends
    with ``"Assistant:"`` so the model writes the assistant turn.
    """
    if ends_with_prefill(messages):
        parts = [f"{m.role.capitalize()}: {m.content}" for m in messages[:-1]]
        return "\n\n".join(parts + [f"Assistant: {messages[-1].content}"])
    parts = [f"{m.role.capitalize()}: {m.content}" for m in messages]
    parts.append("Assistant:")
    return "\n\n".join(parts)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)


def trim_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string (OpenAI semantics: the stop string is not returned)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def load_tokenizer(path: str) -> Any:
    """A Hugging Face tokenizer from a local folder ('smollm2' for the embedded model's), offline."""
    from agent.backends.base import BackendError
    from agent.backends.embedded import is_embedded_alias, resolve_embedded_model

    folder = str(resolve_embedded_model(path)) if is_embedded_alias(path) else path
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - reported with the path named
        raise BackendError(f"tokenizer {path!r} will not load: {exc}") from exc
