"""Any OpenAI-compatible server: ``vllm serve`` first of all, also SGLang, llama.cpp, ``transformers serve``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
import sys
import time
import weakref
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from agent.backends import http
from agent.backends.base import BackendError, Completion, Message, SamplingParams, ToolCall
from agent.backends.endpoints import Endpoint, EndpointSet
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
# How often the start polls a server that is still loading its model.
_LOADING_POLL_S = 0.5
# llama.cpp's server refuses an `n` above its slot count with HTTP 400
# "Field 'n': Value must be between 1 <= value <= 4": the bound it names is its limit.
_N_LIMIT_ERROR = re.compile(r"""['"]?\bn\b['"]?\W.*?<=\s*value\s*<=\s*(\d+)""", re.IGNORECASE | re.DOTALL)


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


def server_root(base_url: str) -> str:
    """The server's root, where llama.cpp's /health, /props and /tokenize live: the API root less its '/v1'."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def split_n(n: int, cap: int | None) -> list[int]:
    """``n`` samples as request sizes of at most ``cap`` each (one request when there is no cap)."""
    if not cap or n <= cap:
        return [n]
    return [cap] * (n // cap) + ([n % cap] if n % cap else [])


class _Unreachable(BackendError):
    """A server did not answer (refused, dropped or timed out), or is still loading its model."""


def task_key(request_id: str) -> str | None:
    """The part of a request id that names its task ('<task>/r<round>/q<index>'): the affinity key."""
    return request_id.split("/", 1)[0] or None


class _NTooLarge(Exception):
    """The server refused a request's `n` and named its limit."""

    def __init__(self, limit: int, reason: str):
        super().__init__(reason)
        self.limit = limit


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
        base_url: str | list[str],
        endpoint: Literal["chat", "completions"] = "chat",
        api_key_env: str | None = None,
        concurrency: int = 16,
        request_timeout_s: float = 600.0,
        max_retries: int = 4,
        tokenizer: str | None = None,
        retry_window_s: float = 180.0,
        startup_timeout_s: float = 600.0,
        max_n_per_request: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ):
        if endpoint not in ("chat", "completions"):
            raise BackendError(f"endpoint must be 'chat' or 'completions', not {endpoint!r}")
        self.model_id = model
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise BackendError("base_url lists no endpoint")
        self.base_urls = [normalise_base_url(u) for u in urls]
        if len(set(self.base_urls)) < len(self.base_urls):
            raise BackendError(f"base_url lists an endpoint twice: {', '.join(redact_url(u) for u in self.base_urls)}")
        self.base_url = self.base_urls[0]
        # The requests of one task stay on one server unless it has this many more in flight
        # than the least loaded one: its cached prompt prefix is worth a short wait, a queue is not.
        self.endpoints = EndpointSet(
            [Endpoint(u, redact_url(u)) for u in self.base_urls],
            slack=max(2, concurrency // (2 * len(self.base_urls))),
            probe=self._probe_endpoint,
        )
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.request_timeout_s = request_timeout_s
        self.max_retries = max_retries
        self.retry_window_s = retry_window_s
        self.startup_timeout_s = startup_timeout_s
        self.tokenizer_path = tokenizer
        self.extra_body = dict(extra_body or {})
        # The model id sent with requests: the configured one, or the one model a
        # single-model server serves under another name (llama.cpp: the GGUF path or --alias).
        self.served_model_id = model
        # Most samples one request may ask for: configured, or learned from the server.
        self.max_n_per_request = max_n_per_request
        self._max_n_configured = max_n_per_request is not None
        # What llama.cpp's server told about itself (/props), None for other servers.
        self.llama_cpp: dict[str, Any] | None = None
        self._tokenizer: Any = None
        self._client: http.Client | None = None
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

    def _where(self) -> str:
        """The server(s), for messages: one URL, or each endpoint with its state."""
        if not self.endpoints.several:
            return redact_url(self.base_url)
        return f"one of {self.endpoints.describe()}"

    def _new_client(self, timeout: float) -> http.Client:
        return http.Client(headers=self._headers(), timeout_s=timeout)

    async def start(self) -> None:
        if self.tokenizer_path and self._tokenizer is None:
            self._tokenizer = await asyncio.to_thread(load_tokenizer, self.tokenizer_path)
        if self._client is None:
            # The semaphore is the real limit; the pool must not queue requests behind it.
            self._client = http.Client(headers=self._headers(), timeout_s=self.request_timeout_s, max_connections=self.concurrency)
        try:
            await self._check_endpoints()
        except BaseException:
            await self.close()  # a start that fails leaves no open connections behind
            raise

    async def _check_endpoints(self) -> None:
        assert self._client is not None
        eps = list(self.endpoints)
        if len(eps) == 1:
            await self._check_endpoint(eps[0], self._client, wait=True)
        else:
            results = await asyncio.gather(*(self._check_endpoint(ep, self._client, wait=True) for ep in eps), return_exceptions=True)
            for ep, result in zip(eps, results):
                # A server that answers but does not serve the model is a mistake in the config.
                if isinstance(result, BaseException) and not isinstance(result, _Unreachable):
                    raise result
            unreachable = [(ep, r) for ep, r in zip(eps, results) if isinstance(r, _Unreachable)]
            if len(unreachable) == len(eps):
                raise BackendError("no endpoint of base_url answers: " + "; ".join(str(r) for _, r in unreachable))
            for ep, reason in unreachable:
                # One server of many missing (a node still booting) need not stop the run: it is
                # probed while the run goes on, and joins when it answers.
                self.endpoints.mark_down(ep, str(reason), quiet=True)
                print(f"note: {reason}; starting without it, it joins when it answers", file=sys.stderr)
        first = next(ep for ep in eps if ep.up)
        self.served_model_id = first.served_model_id or self.model_id
        self._served = first.model_entry
        self.llama_cpp = first.llama_cpp

    async def _check_endpoint(self, ep: Endpoint, client: http.Client, *, wait: bool) -> None:
        """Check that ``ep`` serves the model and learn how; ``wait``: wait out a model loading.

        Raises :class:`_Unreachable` for a server that does not answer (or still loads its
        model and ``wait`` is false), :class:`BackendError` for one that does not serve the model.
        """
        where = ep.label
        try:
            resp = await client.get(f"{ep.url}/models", timeout=30.0)
            if resp.status_code == 503:  # some servers refuse even the model list while loading
                if not wait:
                    raise _Unreachable(f"server at {where} is loading its model ({_error_text(resp)})")
                await self._wait_while_loading(client, f"{ep.url}/models", where)
                resp = await client.get(f"{ep.url}/models", timeout=30.0)
        except http.HTTPError as exc:
            raise _Unreachable(f"OpenAI-compatible server at {where} is unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise BackendError(f"server at {where} answered GET /models with HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            served = {entry["id"]: entry for entry in resp.json().get("data", [])}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendError(f"server at {where} answered GET /models with something other than a model list: {resp.text[:300]}") from exc
        wanted = self.model_id
        if wanted not in served and is_embedded_alias(wanted):
            # `transformers serve <converted folder>` names the embedded model by its folder.
            folder = str(embedded_cache_dir(wanted))
            if folder in served:
                wanted = self.model_id = folder
        llama_cpp = await self._probe_llama_cpp(ep, client, wait=wait)
        if wanted not in served and len(served) == 1 and llama_cpp is not None:
            # llama.cpp's server runs one model and answers a request for any name with it
            # (its id is the GGUF path or --alias): the configured name is an alias. Servers
            # that check the name (vLLM, SGLang, transformers serve) still need it exact.
            (only,) = served
            if wait:
                print(f"note: the llama.cpp server at {where} serves one model, {only!r}; using it for model {wanted!r}", file=sys.stderr)
            wanted = only
        if wanted not in served:
            listed = ", ".join(repr(m) for m in served) or "none"
            raise BackendError(f"server at {where} does not serve model {self.model_id!r}; it serves: {listed}")
        ep.served_model_id = wanted
        ep.model_entry = served[wanted]
        ep.llama_cpp = llama_cpp
        if llama_cpp is not None and not self._max_n_configured:
            # Each sample of a request takes a slot; more than it has is refused. With several
            # servers a request may go to any of them: the fewest slots decide.
            slots = max(1, llama_cpp["total_slots"])
            self.max_n_per_request = min(self.max_n_per_request or slots, slots)

    async def _probe_endpoint(self, ep: Endpoint) -> bool:
        """Whether a down endpoint serves the model again (its own client: the run's pool may be full)."""
        async with self._new_client(10.0) as client:
            try:
                await self._check_endpoint(ep, client, wait=False)
            except BackendError as exc:
                ep.down_reason = str(exc)
                return False
        return True

    async def _wait_while_loading(self, client: http.Client, url: str, where: str) -> None:
        """Poll ``url`` while it answers 503 (a server loading its model), at most ``startup_timeout_s``."""
        deadline = time.monotonic() + self.startup_timeout_s
        said = False
        while True:
            resp = await client.get(url, timeout=30.0)
            if resp.status_code != 503:
                return
            if not said:
                print(f"waiting for the server at {where} to load its model ({_error_text(resp)})", file=sys.stderr, flush=True)
                said = True
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"server at {where} was still loading its model after {self.startup_timeout_s:g} s "
                    f"(GET {url.rsplit('/', 1)[-1]}: HTTP 503 {_error_text(resp)}); raise model.startup_timeout_s to wait longer"
                )
            await asyncio.sleep(_LOADING_POLL_S)

    async def _probe_llama_cpp(self, ep: Endpoint, client: http.Client, *, wait: bool) -> dict[str, Any] | None:
        """Wait out llama.cpp's model loading (its /health answers 503) and read its slot count.

        Its /v1/models answers while the model is still loading, so a run would otherwise
        start sending completions that fail with '503 Loading model'. Other servers answer
        /health with 200 or 404 and have no /props. Returns what /props says, or None.
        """
        root = server_root(ep.url)
        try:
            health = await client.get(f"{root}/health", timeout=30.0)
            if health.status_code == 503:
                if not wait:
                    raise _Unreachable(f"server at {ep.label} is loading its model ({_error_text(health)})")
                await self._wait_while_loading(client, f"{root}/health", ep.label)
            props = await client.get(f"{root}/props", timeout=30.0)
            info = props.json() if props.status_code == 200 else None
        except (http.HTTPError, ValueError):
            return None
        if not isinstance(info, dict) or not isinstance(info.get("total_slots"), int):
            return None
        return {"total_slots": info["total_slots"], "build_info": info.get("build_info"), "model_path": info.get("model_path")}

    async def close(self) -> None:
        await self.endpoints.close()
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
        body: dict[str, Any] = {**self.extra_body, "model": self.served_model_id, **params.request_fields(n=n, seed=seed)}
        if self.endpoint == "chat":
            body["messages"] = as_dicts(messages)
            if ends_with_prefill(messages):
                # Continue the started assistant turn instead of opening a new one.
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        else:
            body["prompt"] = self._prompt_text(messages)
        return body

    async def _post(self, body: dict[str, Any], key: str | None = None) -> tuple[dict[str, Any], float, Endpoint]:
        """One request, with retries on transient failures; the JSON answer, its latency and the endpoint that gave it.

        With several endpoints each attempt goes to the one :meth:`EndpointSet.choose` picks
        for ``key`` (the task), away from those that failed this request while others are up.
        """
        if self._client is None:
            raise BackendError(f"model {self.model_id!r}: generate() called before start()")
        path = "/chat/completions" if self.endpoint == "chat" else "/completions"
        endpoints = self.endpoints
        last_reason = ""
        give_up_at = time.monotonic() + self.retry_window_s
        attempt = 0
        failed_on: list[Endpoint] = []
        while True:
            retry_after: float | None = None
            async with self._semaphore():
                # Chosen and counted in flight with no await in between: concurrent requests see each other's load.
                ep = endpoints.choose(key, failed_on)
                ep.in_flight += 1
                started = time.perf_counter()
                self.requests_sent += 1
                try:
                    sent = body if ep.served_model_id in (None, body.get("model")) else {**body, "model": ep.served_model_id}
                    resp = await self._client.post(f"{ep.url}{path}", json=sent)
                except http.HTTPError as exc:
                    last_reason = str(exc)
                    resp = None
                    endpoints.failed(ep, last_reason, dead=exc.dead)
                finally:
                    ep.in_flight -= 1
                latency = time.perf_counter() - started
            where = f"{ep.label}{path}"
            if resp is not None:
                if resp.status_code == 200:
                    try:
                        answer = resp.json()
                    except ValueError:
                        last_reason = f"HTTP 200 with a body that is not JSON: {resp.text[:200]!r}"
                        endpoints.failed(ep, last_reason, dead=False)
                    else:
                        ep.answered += 1
                        endpoints.succeeded(ep)
                        return answer, latency, ep
                elif resp.status_code in _RETRY_STATUSES:
                    last_reason = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    retry_after = _retry_after_s(resp)
                    if resp.status_code >= 500:  # 429, 408, 409: busy, not broken
                        endpoints.failed(ep, last_reason, dead=False)
                else:
                    endpoints.succeeded(ep)  # it answered: alive, the request is what is wrong
                    limit = _N_LIMIT_ERROR.search(resp.text) if resp.status_code == 400 else None
                    if limit and int(limit.group(1)) < body.get("n", 1):
                        raise _NTooLarge(int(limit.group(1)), resp.text[:300])
                    raise BackendError(f"server refused the request to {where}: HTTP {resp.status_code}: {resp.text[:500]}")
            if ep not in failed_on:
                failed_on.append(ep)
            # Another live server that has not failed this request takes it at once; backing
            # off is for when every server has had its try.
            untried = any(e.up and e not in failed_on for e in endpoints)
            if len(failed_on) == len(endpoints):
                failed_on.clear()  # every endpoint failed it once: all are candidates again
            attempt += 1
            # At least max_retries retries, and more while the retry window lasts (a model reload).
            if attempt > self.max_retries and time.monotonic() >= give_up_at:
                break
            if untried:
                continue
            await asyncio.sleep(retry_after if retry_after is not None else _backoff_s(attempt - 1))
        if not endpoints.several:
            raise BackendError(f"request to {redact_url(self.base_url)}{path} failed after {attempt} attempts; last: {last_reason}")
        raise BackendError(
            f"request to {path} failed after {attempt} attempts over {self.retry_window_s:g} s or more on every endpoint "
            f"({endpoints.describe()}); last: {last_reason}"
        )

    async def _completions_of(
        self, answer: dict[str, Any], params: SamplingParams, latency: float, prompt_tokens_local: int | None, ep: Endpoint | None = None
    ) -> list[Completion]:
        ep = ep or self.endpoints.endpoints[0]
        choices = answer.get("choices")
        if not isinstance(choices, list):
            raise BackendError(f"server answered without a 'choices' list: {str(answer)[:300]}")
        usage = answer.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = prompt_tokens_local if prompt_tokens_local is not None else 0
        texts: list[str] = []
        reasons: list[str] = []
        thoughts: list[str | None] = []
        calls: list[list[ToolCall] | None] = []
        for choice in choices:
            thought, called = None, None
            if self.endpoint == "chat":
                message = choice.get("message") or {}
                text = message.get("content") or ""
                # vLLM and SGLang with a reasoning parser: `reasoning_content` (newer vLLM also `reasoning`).
                thought = message.get("reasoning_content") or message.get("reasoning")
                thought = thought if isinstance(thought, str) else None
                called = _tool_calls(message.get("tool_calls"))
            else:
                text = choice.get("text") or ""
            # Some servers return the matched stop string; the contract is that it is cut.
            text, hit_stop = trim_at_stop(text, params.stop)
            reason = choice.get("finish_reason") or ("stop" if hit_stop else "unknown")
            texts.append(text)
            reasons.append(reason)
            thoughts.append(thought)
            calls.append(called)
        counts = await self._completion_token_counts(texts, reasons, usage.get("completion_tokens"), params.max_tokens, ep)
        # Which server answered, when there is a choice (one server: provenance names it).
        served_by = ep.label if self.endpoints.several else None
        return [
            Completion(text=t, prompt_tokens=int(prompt_tokens), completion_tokens=c, finish_reason=r, latency_s=latency,
                       endpoint=served_by, reasoning=th, tool_calls=tc)
            for t, r, c, th, tc in zip(texts, reasons, counts, thoughts, calls)
        ]

    async def _completion_token_counts(
        self, texts: list[str], reasons: list[str], usage_total: int | None, max_tokens: int, ep: Endpoint | None = None
    ) -> list[int]:
        """Per-choice token counts: usage gives one figure for all choices, and not always their total."""
        if len(texts) == 1 and usage_total is not None:
            return [int(usage_total)]
        if self._tokenizer is not None:
            return [len(self._tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        ep = ep or self.endpoints.endpoints[0]
        if ep.llama_cpp is not None:
            # llama.cpp's server reports the first choice's tokens as the request's
            # completion_tokens; its own tokenizer counts each choice.
            counted = await self._server_token_counts(texts, reasons, max_tokens, ep)
            if counted is not None:
                return counted
        # A choice cut by length used exactly max_tokens and every other non-empty one at
        # least one token: a total below that counts fewer than all choices.
        floor = sum(max_tokens if r == "length" else int(bool(t)) for t, r in zip(texts, reasons))
        if usage_total is None or int(usage_total) < floor:
            return [max_tokens if r == "length" else estimate_tokens(t) for t, r in zip(texts, reasons)]
        # The choices cut by length took max_tokens each; the rest share what is left in
        # proportion to their length, so the counts still add up to the server's total.
        counts = [max_tokens if r == "length" else 0 for r in reasons]
        rest = [i for i, r in enumerate(reasons) if r != "length"]
        left = max(int(usage_total) - sum(counts), 0)
        chars = sum(len(texts[i]) for i in rest)
        for i in rest:
            counts[i] = round(left * len(texts[i]) / chars) if chars else left // len(rest)
        return counts

    async def _server_token_counts(self, texts: list[str], reasons: list[str], max_tokens: int, ep: Endpoint) -> list[int] | None:
        """Each text's tokens by ``ep``'s POST /tokenize (llama.cpp; a choice cut by length: max_tokens); None if it fails."""
        assert self._client is not None
        url = f"{server_root(ep.url)}/tokenize"

        async def count(text: str) -> int:
            resp = await self._client.post(url, json={"content": text, "add_special": False}, timeout=60.0)
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            return len(resp.json()["tokens"])

        try:
            counted = await asyncio.gather(*(count(t) for t, r in zip(texts, reasons) if r != "length" and t))
        except (http.HTTPError, ValueError, KeyError, TypeError):
            return None
        it = iter(counted)
        return [max_tokens if r == "length" else (next(it) if t else 0) for t, r in zip(texts, reasons)]

    async def _ask(
        self, messages: list[Message], params: SamplingParams, n: int, seed: int | None, prompt_tokens_local: int | None, key: str | None
    ) -> list[Completion]:
        answer, latency, ep = await self._post(self._body(messages, params, n, seed), key)
        return await self._completions_of(answer, params, latency, prompt_tokens_local, ep)

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str = "") -> list[Completion]:
        """``params.n`` completions, in as few requests as the server allows.

        Requests ask for at most ``max_n_per_request`` samples (llama.cpp: its slots); a
        server that returns fewer choices than asked is asked again for the rest. The
        i-th request of a prompt has seed ``topup_seed(seed, i)`` (the first: ``seed``).
        """
        local_prompt = self.count_tokens(messages) if self._tokenizer is not None else None
        where = self._where()
        key = task_key(request_id)
        got: list[Completion] = []
        answered = 0  # requests that returned choices: the next request's seed index
        cap = self.max_n_per_request
        for _ in range(_MAX_TOPUP_ROUNDS):
            missing = params.n - len(got)
            if missing <= 0:
                break
            sizes = split_n(missing, cap)
            seeds = [params.seed if answered + i == 0 else topup_seed(params.seed, answered + i) for i in range(len(sizes))]
            results = await asyncio.gather(
                *(self._ask(messages, params, k, seed, local_prompt, key) for k, seed in zip(sizes, seeds)), return_exceptions=True
            )
            refused = [r for r in results if isinstance(r, _NTooLarge)]
            failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, _NTooLarge)]
            if failed:
                raise failed[0]
            batches = [r for r in results if not isinstance(r, BaseException)]
            for asked, batch in zip(sizes, results):
                if isinstance(batch, BaseException):
                    continue
                if 0 < len(batch) < asked:  # the server returns fewer choices than asked: ask for that many
                    cap = min(cap or asked, len(batch))
            if refused:
                limit = min(r.limit for r in refused)
                if limit < 1 or (cap is not None and limit >= cap):
                    raise BackendError(f"server at {where} refused n={min(sizes)}: {refused[0]}")
                cap = self.max_n_per_request = limit  # learned once for every later request
            before = len(got)
            for batch in batches:
                if batch:
                    answered += 1
                    got.extend(batch)
            if len(got) == before and not refused:
                break
        if not got:
            raise BackendError(f"server at {where} returned no choices for model {self.model_id!r}")
        if len(got) < params.n:
            raise BackendError(f"server at {where} returned {len(got)} of {params.n} completions")
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
            "base_url": [e.label for e in self.endpoints] if self.endpoints.several else redact_url(self.base_url),
            "endpoint": self.endpoint,
            "served_model": served,
            "served_model_id": self.served_model_id,
            "llama_cpp": self.llama_cpp,
            "max_n_per_request": self.max_n_per_request,
            "tokenizer": self.tokenizer_path,
            "token_counts": "estimate" if self.token_counts_estimated else "tokenizer",
            "chars_per_token_estimate": CHARS_PER_TOKEN_ESTIMATE if self.token_counts_estimated else None,
            "aiohttp": http.version(),
            **({"endpoints": self.endpoints.stats()} if self.endpoints.several else {}),
        }


def _tool_calls(raw: Any) -> list[ToolCall] | None:
    """The function calls of a chat answer's message; None when it made none."""
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for k, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        args = fn.get("arguments")
        out.append(ToolCall(id=str(call.get("id") or f"call_{k}"), name=str(fn.get("name") or ""),
                            arguments=args if isinstance(args, str) else json.dumps(args)))
    return out or None


def _backoff_s(attempt: int) -> float:
    """Exponential backoff with full jitter, so many clients do not retry in lockstep."""
    ceiling = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * math.pow(2, attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _error_text(resp: http.Response) -> str:
    """The message of an error answer: OpenAI-style ``{"error": {"message": ...}}``, else the body's start."""
    try:
        error = resp.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return message[:200]
    except (ValueError, AttributeError):
        pass
    return resp.text[:200]


def _retry_after_s(resp: http.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return min(float(value), _BACKOFF_CAP_S) if value is not None else None
    except ValueError:
        return None
