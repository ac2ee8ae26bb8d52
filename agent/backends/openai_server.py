"""Any OpenAI-compatible server: ``vllm serve`` first of all, also SGLang, llama.cpp, ``transformers serve``."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import time
import weakref
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from agent.backends.base import BackendError, Completion, Message, SamplingParams
from agent.backends.embedded import embedded_cache_dir, is_embedded_alias
from agent.backends.chat_format import (
    CHARS_PER_TOKEN_ESTIMATE,
    as_dicts,
    estimate_tokens,
    load_tokenizer,
    render_plain,
    render_with_template,
    ends_with_prefill,
    trim_at_stop,
)

# Statuses worth another try: the server is overloaded or restarting, not refusing the request.
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 30.0
# Rounds of top-up requests for servers that return fewer than n choices; each round must make progress.
_MAX_TOPUP_ROUNDS = 64


def normalise_base_url(url: str) -> str:
    """API root ending in the version path; ``http://host:port`` gets ``/v1``, a bare ``host:port`` ``http://`` too."""
    from agent.backends import check_base_url

    try:
        url = check_base_url(url)
    except ValueError as e:
        raise BackendError(f"base_url {url!r} {e}") from None
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact_url(url: str) -> str:
    """The URL without user:password, for messages and provenance."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def topup_seed(seed: int | None, index: int) -> int | None:
    """Seed of the index-th extra request for missing samples.

    Hashed rather than ``seed + index`` because neighbouring seeds belong to other requests
    of the same run.
    """
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}/topup/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class _RetryableError(Exception):
    pass


class OpenAIBackend:
    """Client of an OpenAI-compatible HTTP server.

    Servers that ignore ``n`` (``transformers serve`` returns one choice) are asked again
    for the missing samples, each extra request with its own seed derived from the request's.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        endpoint: Literal["chat", "completions"] = "chat",
        api_key_env: str | None = None,
        concurrency: int = 16,
        request_timeout_s: float = 600.0,
        max_retries: int = 4,
        tokenizer: str | None = None,
    ):
        if endpoint not in ("chat", "completions"):
            raise BackendError(f"endpoint must be 'chat' or 'completions', not {endpoint!r}")
        self.model_id = model
        self.base_url = normalise_base_url(base_url)
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.request_timeout_s = request_timeout_s
        self.max_retries = max_retries
        self.tokenizer_path = tokenizer
        self._tokenizer: Any = None
        self._client: httpx.AsyncClient | None = None
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self._served: dict[str, Any] = {}
        # HTTP requests sent for completions, retries included (for run statistics).
        self.requests_sent = 0
        # True when count_tokens returns chars/3.5 rather than the model's own count.
        self.token_counts_estimated = tokenizer is None

    # -- lifecycle -----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise BackendError(f"api_key_env names {self.api_key_env!r}, but that environment variable is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def start(self) -> None:
        if self.tokenizer_path and self._tokenizer is None:
            self._tokenizer = await asyncio.to_thread(load_tokenizer, self.tokenizer_path)
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers(),
                timeout=httpx.Timeout(self.request_timeout_s, connect=10.0),
                # The semaphore is the real limit; the pool must not queue requests behind it.
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            )
        where = redact_url(self.base_url)
        try:
            resp = await self._client.get(f"{self.base_url}/models", timeout=30.0)
        except httpx.HTTPError as exc:
            raise BackendError(f"OpenAI-compatible server at {where} is unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise BackendError(f"server at {where} answered GET /models with HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            served = {entry["id"]: entry for entry in resp.json().get("data", [])}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendError(f"server at {where} answered GET /models with something other than a model list: {resp.text[:300]}") from exc
        if self.model_id not in served and is_embedded_alias(self.model_id):
            # `transformers serve <converted folder>` names the embedded model by its folder.
            folder = str(embedded_cache_dir(self.model_id))
            if folder in served:
                self.model_id = folder
        if self.model_id not in served:
            listed = ", ".join(repr(m) for m in served) or "none"
            raise BackendError(f"server at {where} does not serve model {self.model_id!r}; it serves: {listed}")
        self._served = served[self.model_id]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- requests ------------------------------------------------------------------------

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return sem

    def _prompt_text(self, messages: list[Message]) -> str:
        if self._tokenizer is not None:
            return render_with_template(self._tokenizer, messages)
        return render_plain(messages)

    def _body(self, messages: list[Message], params: SamplingParams, n: int, seed: int | None) -> dict[str, Any]:
        # top_k and min_p are vLLM/SGLang extras, sent only when set.
        body: dict[str, Any] = {"model": self.model_id, **params.request_fields(n=n, seed=seed)}
        if self.endpoint == "chat":
            body["messages"] = as_dicts(messages)
            if ends_with_prefill(messages):
                # Continue the started assistant turn instead of opening a new one.
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        else:
            body["prompt"] = self._prompt_text(messages)
        return body

    async def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """One request, with retries on transient failures; returns the JSON answer and its latency."""
        if self._client is None:
            raise BackendError(f"model {self.model_id!r}: generate() called before start()")
        path = "/chat/completions" if self.endpoint == "chat" else "/completions"
        url = f"{self.base_url}{path}"
        where = f"{redact_url(self.base_url)}{path}"
        last_reason = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            async with self._semaphore():
                started = time.perf_counter()
                self.requests_sent += 1
                try:
                    resp = await self._client.post(url, json=body)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    last_reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    resp = None
                latency = time.perf_counter() - started
            if resp is not None:
                if resp.status_code == 200:
                    try:
                        return resp.json(), latency
                    except ValueError:
                        last_reason = f"HTTP 200 with a body that is not JSON: {resp.text[:200]!r}"
                elif resp.status_code in _RETRY_STATUSES:
                    last_reason = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    retry_after = _retry_after_s(resp)
                else:
                    raise BackendError(f"server refused the request to {where}: HTTP {resp.status_code}: {resp.text[:500]}")
            if attempt < self.max_retries:
                await asyncio.sleep(retry_after if retry_after is not None else _backoff_s(attempt))
        raise BackendError(f"request to {where} failed after {self.max_retries + 1} attempts; last: {last_reason}")

    def _completions_of(self, answer: dict[str, Any], params: SamplingParams, latency: float, prompt_tokens_local: int | None) -> list[Completion]:
        choices = answer.get("choices")
        if not isinstance(choices, list):
            raise BackendError(f"server answered without a 'choices' list: {str(answer)[:300]}")
        usage = answer.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = prompt_tokens_local if prompt_tokens_local is not None else 0
        texts: list[str] = []
        reasons: list[str] = []
        for choice in choices:
            if self.endpoint == "chat":
                text = ((choice.get("message") or {}).get("content")) or ""
            else:
                text = choice.get("text") or ""
            # Some servers return the matched stop string; the contract is that it is cut.
            text, hit_stop = trim_at_stop(text, params.stop)
            reason = choice.get("finish_reason") or ("stop" if hit_stop else "unknown")
            texts.append(text)
            reasons.append(reason)
        counts = self._completion_token_counts(texts, reasons, usage.get("completion_tokens"), params.max_tokens)
        return [
            Completion(text=t, prompt_tokens=int(prompt_tokens), completion_tokens=c, finish_reason=r, latency_s=latency)
            for t, r, c in zip(texts, reasons, counts)
        ]

    def _completion_token_counts(self, texts: list[str], reasons: list[str], usage_total: int | None, max_tokens: int) -> list[int]:
        """Per-choice token counts: usage gives only the total over all choices."""
        if len(texts) == 1 and usage_total is not None:
            return [int(usage_total)]
        if self._tokenizer is not None:
            return [len(self._tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        if usage_total is None:
            return [estimate_tokens(t) for t in texts]
        # A choice cut by length used exactly max_tokens; the rest share what is left in
        # proportion to their length, so the counts still add up to the server's total.
        counts = [max_tokens if r == "length" else 0 for r in reasons]
        rest = [i for i, r in enumerate(reasons) if r != "length"]
        left = max(int(usage_total) - sum(counts), 0)
        chars = sum(len(texts[i]) for i in rest)
        for i in rest:
            counts[i] = round(left * len(texts[i]) / chars) if chars else left // len(rest)
        return counts

    async def _ask(self, messages: list[Message], params: SamplingParams, n: int, seed: int | None, prompt_tokens_local: int | None) -> list[Completion]:
        answer, latency = await self._post(self._body(messages, params, n, seed))
        return self._completions_of(answer, params, latency, prompt_tokens_local)

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str = "") -> list[Completion]:
        local_prompt = self.count_tokens(messages) if self._tokenizer is not None else None
        got = await self._ask(messages, params, params.n, params.seed, local_prompt)
        if not got:
            raise BackendError(f"server at {redact_url(self.base_url)} returned no choices for model {self.model_id!r}")
        per_request = len(got)  # what this server actually returns for one request
        extra = 0
        for _ in range(_MAX_TOPUP_ROUNDS):
            missing = params.n - len(got)
            if missing <= 0:
                break
            asks = []
            while missing > 0:
                k = min(per_request, missing)
                extra += 1
                asks.append(self._ask(messages, params, k, topup_seed(params.seed, extra), local_prompt))
                missing -= k
            before = len(got)
            for batch in await asyncio.gather(*asks):
                got.extend(batch)
            if len(got) == before:
                break
        if len(got) < params.n:
            raise BackendError(f"server at {redact_url(self.base_url)} returned {len(got)} of {params.n} completions")
        return got[: params.n]

    # -- accounting ----------------------------------------------------------------------

    def count_tokens(self, messages: list[Message]) -> int:
        """Prompt tokens by the local tokenizer; without one, chars/3.5 (``token_counts_estimated``)."""
        if self._tokenizer is not None:
            text = render_with_template(self._tokenizer, messages) if self.endpoint == "chat" else self._prompt_text(messages)
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        return estimate_tokens(self._prompt_text(messages))

    def provenance(self) -> dict:
        served = {k: v for k, v in self._served.items() if k in ("id", "owned_by", "root", "parent", "max_model_len", "created")}
        return {
            "backend": self.name,
            "model": self.model_id,
            "base_url": redact_url(self.base_url),
            "endpoint": self.endpoint,
            "served_model": served,
            "tokenizer": self.tokenizer_path,
            "token_counts": "estimate" if self.token_counts_estimated else "tokenizer",
            "chars_per_token_estimate": CHARS_PER_TOKEN_ESTIMATE if self.token_counts_estimated else None,
            "httpx": httpx.__version__,
        }


def _backoff_s(attempt: int) -> float:
    """Exponential backoff with full jitter, so many clients do not retry in lockstep."""
    ceiling = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * math.pow(2, attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _retry_after_s(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return min(float(value), _BACKOFF_CAP_S) if value is not None else None
    except ValueError:
        return None
