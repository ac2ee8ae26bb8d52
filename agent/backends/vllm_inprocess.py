"""In-process vLLM on a GPU box: vLLM V1's asynchronous engine, one stream per request.

vLLM is an optional extra (``pip install 'arcsynth[vllm]'``) imported only by ``start()``.
Every ``generate`` call is one ``AsyncLLM.generate(prompt, sampling_params, request_id)``
stream: the engine's scheduler adds a request to the running batch at its next step and
drops each finished one (continuous batching), so a request never waits for another
request's longest completion, and the agent verifies a request's programs the moment it
returns while the GPU keeps generating the others. ``SamplingParams(n=k)`` samples k
completions from one prefill of the prompt, and prefix caching shares the KV cache of the
common system prompt and task text between requests. The chat template is applied here
with the model's tokenizer and the engine gets token ids, so counting a prompt's tokens
and sending it see the very same tokens. A request whose caller is cancelled (a task that
has enough passing programs, a run that is interrupted) is aborted in the engine.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import itertools
import sys
import time
from pathlib import Path
from typing import Any, Callable

from agent.backends.base import BackendError, Completion, Message, SamplingParams
from agent.backends.chat_format import render_with_template, trim_at_stop
from agent.backends.embedded import DEFAULT_MODEL, cache_root, is_embedded_alias, resolve_embedded_model
from agent.backends.weights import cached_weights_hash

INSTALL_HINT = "pip install 'arcsynth[vllm]'"
# Prompts tokenised by count_tokens, kept for the generate call that usually follows.
_TOKENISED_KEPT = 512


class VLLMBackend:
    """``vllm.v1.engine.async_llm.AsyncLLM`` in this process.

    ``engine_class``, ``engine_args_class``, ``sampling_params_class`` and
    ``final_only`` default to vLLM's ``AsyncLLM``, ``AsyncEngineArgs``,
    ``SamplingParams`` and ``RequestOutputKind.FINAL_ONLY``; they are parameters so
    the scheduling can be exercised without a GPU.
    """

    name = "vllm"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        engine_class: Any = None,
        engine_args_class: Callable[..., Any] | None = None,
        sampling_params_class: Callable[..., Any] | None = None,
        final_only: Any = None,
    ):
        self.model_id = model
        self.dtype = dtype
        self.tensor_parallel_size = tensor_parallel_size
        self.data_parallel_size = data_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.enable_prefix_caching = enable_prefix_caching
        self.seed = seed
        self._engine_class = engine_class
        self._args_class = engine_args_class
        self._sp_class = sampling_params_class
        self._final_only = final_only
        self._engine: Any = None
        self._tokenizer: Any = None
        self._path: str | None = None
        self._weights_sha256: str | None = None
        self._tokenised: dict[tuple[tuple[str, str], ...], list[int]] = {}
        # Requests in the engine now: engine request id -> the task consuming its stream.
        self._in_flight: dict[str, asyncio.Task] = {}
        self._ids = itertools.count()
        self._closing = False
        # Most requests in the engine at once (run statistics: what continuous batching had to work with).
        self.peak_in_flight = 0

    # -- lifecycle -----------------------------------------------------------------------

    def _import_vllm(self) -> None:
        if None not in (self._engine_class, self._args_class, self._sp_class, self._final_only):
            return
        try:
            from vllm import SamplingParams as VSamplingParams
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.sampling_params import RequestOutputKind
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise BackendError(f"backend 'vllm' needs vLLM, which is not installed ({exc}); {INSTALL_HINT} on a CUDA machine") from exc
        self._engine_class = self._engine_class or AsyncLLM
        self._args_class = self._args_class or AsyncEngineArgs
        self._sp_class = self._sp_class or VSamplingParams
        self._final_only = self._final_only if self._final_only is not None else RequestOutputKind.FINAL_ONLY

    def _engine_kwargs(self, path: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            model=path,
            dtype=self.dtype,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            enable_prefix_caching=self.enable_prefix_caching,
            seed=self.seed,
        )
        if self.data_parallel_size > 1:  # left out otherwise: older vLLM releases do not know it
            kwargs["data_parallel_size"] = self.data_parallel_size
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        # vLLM up to 0.10 logs every request unless told not to: thousands of lines per
        # minute, formatted on this process's event loop.
        if "disable_log_requests" in getattr(self._args_class, "__dataclass_fields__", {}):
            kwargs["disable_log_requests"] = True
        return kwargs

    def _load_sync(self) -> None:
        self._import_vllm()
        path = str(resolve_embedded_model(self.model_id)) if is_embedded_alias(self.model_id) else self.model_id
        try:
            args = self._args_class(**self._engine_kwargs(path))
            # Built off the event loop (loading weights takes minutes); AsyncLLM starts its
            # output handler on the loop with the first request.
            self._engine = self._engine_class.from_engine_args(args)
        except Exception as exc:  # noqa: BLE001 - reported with the model named
            raise BackendError(f"vLLM could not load model {self.model_id!r}: {type(exc).__name__}: {exc}") from exc
        self._path = path
        local = Path(path).expanduser()
        if local.is_dir():
            self._weights_sha256 = cached_weights_hash(local, cache_root() / "weights-hashes")

    async def start(self) -> None:
        if self._engine is not None:
            return
        await asyncio.to_thread(self._load_sync)
        tokenizer = self._engine.get_tokenizer()  # a coroutine in vLLM <= 0.10, a plain call later
        self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        self._closing = False

    async def close(self) -> None:
        """Abort every request still in the engine (its caller gets a BackendError) and shut the engine down."""
        self._closing = True
        engine, self._engine = self._engine, None
        running = dict(self._in_flight)
        if engine is not None and running:
            try:
                await engine.abort(list(running))
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        for task in running.values():
            task.cancel()
        if running:
            await asyncio.gather(*running.values(), return_exceptions=True)
        self._in_flight.clear()
        self._tokenised.clear()
        if engine is not None:
            shutdown = getattr(engine, "shutdown", None)
            if shutdown is not None:
                shutdown()
        torch = sys.modules.get("torch")  # loaded by vLLM; never imported just to tidy up
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- requests ------------------------------------------------------------------------

    def _prompt_ids(self, messages: list[Message]) -> list[int]:
        """The prompt's token ids with the model's chat template (a prefill left open)."""
        key = tuple((m.role, m.content, m.reasoning) for m in messages)
        ids = self._tokenised.get(key)
        if ids is None:
            text = render_with_template(self._tokenizer, messages)
            # The template already wrote the special tokens (BOS and the role markers).
            ids = list(self._tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._tokenised) >= _TOKENISED_KEPT:
                self._tokenised.pop(next(iter(self._tokenised)))
            self._tokenised[key] = ids
        return ids

    def _sampling_params(self, params: SamplingParams) -> Any:
        # Greedy samples are identical: one is generated and copied.
        n = 1 if params.temperature == 0 else params.n
        # FINAL_ONLY: the stream yields once, when all n samples are done.
        return self._sp_class(**params.request_fields(n=n, seed=params.seed), output_kind=self._final_only)

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str = "") -> list[Completion]:
        if self._engine is None:
            raise BackendError(f"model {self.model_id!r}: generate() called before start()")
        ids = self._prompt_ids(messages)
        self._tokenised.pop(tuple((m.role, m.content, m.reasoning) for m in messages), None)  # sent: no longer needed
        # Unique in the engine even when the agent retries a request under the same id.
        engine_id = f"{request_id or 'request'}#{next(self._ids)}"
        started = time.perf_counter()
        consumer = asyncio.ensure_future(self._stream(engine_id, ids, self._sampling_params(params)))
        self._in_flight[engine_id] = consumer
        self.peak_in_flight = max(self.peak_in_flight, len(self._in_flight))
        try:
            final = await consumer  # cancelling the caller cancels the stream, which aborts it
        except asyncio.CancelledError:
            if self._closing:  # close() cancelled the stream, not the caller
                raise BackendError("vLLM backend closed before the request finished") from None
            raise
        finally:
            self._in_flight.pop(engine_id, None)
        return self._completions(final, params, time.perf_counter() - started)

    async def _stream(self, engine_id: str, ids: list[int], sampling: Any) -> Any:
        """Consume one request's stream; the last output has all n completions."""
        final = None
        try:
            async for output in self._engine.generate({"prompt_token_ids": ids}, sampling, engine_id):
                final = output
        except asyncio.CancelledError:
            engine = self._engine
            if engine is not None:
                # Free the request's slot in the running batch at once; AsyncLLM does the
                # same when the stream is cancelled, this covers versions that do not.
                try:
                    await engine.abort(engine_id)
                except Exception:  # noqa: BLE001 - the request is gone either way
                    pass
            raise
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - prompt too long, engine dead: the caller gets the reason
            cause = exc.__cause__ or exc
            raise BackendError(f"vLLM failed on request {engine_id} of model {self.model_id!r}: {type(cause).__name__}: {cause}") from exc
        if final is None or not getattr(final, "finished", True):
            raise BackendError(f"vLLM ended request {engine_id} without a finished output")
        return final

    def _completions(self, request_output: Any, params: SamplingParams, latency: float) -> list[Completion]:
        prompt_tokens = len(request_output.prompt_token_ids or [])
        completions = []
        for out in sorted(request_output.outputs, key=lambda o: getattr(o, "index", 0)):
            # vLLM already leaves stop strings out; trimming again keeps the contract if that default changes.
            text, _ = trim_at_stop(out.text, params.stop)
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=len(out.token_ids),
                    finish_reason=out.finish_reason or "unknown",
                    latency_s=latency,
                )
            )
        if params.temperature == 0 and completions:
            completions = [completions[0].model_copy() for _ in range(params.n)]
        if len(completions) != params.n:
            raise BackendError(f"vLLM returned {len(completions)} of {params.n} completions")
        return completions

    # -- accounting ----------------------------------------------------------------------

    def count_tokens(self, messages: list[Message]) -> int:
        if self._tokenizer is None:
            raise BackendError(f"model {self.model_id!r}: count_tokens() needs start() first (the tokenizer comes with the engine)")
        return len(self._prompt_ids(messages))

    def provenance(self) -> dict:
        try:
            version = importlib.metadata.version("vllm")
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {
            "backend": self.name,
            "model": self.model_id,
            "path": self._path,
            "weights_sha256": self._weights_sha256,
            "vllm": version,
            "engine": f"{getattr(self._engine_class, '__module__', '?')}.{getattr(self._engine_class, '__name__', '?')}",
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "data_parallel_size": self.data_parallel_size,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_prefix_caching": self.enable_prefix_caching,
            "engine_seed": self.seed,
        }
