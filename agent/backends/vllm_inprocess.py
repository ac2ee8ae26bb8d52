"""In-process vLLM on a GPU box: the prompts of all tasks in flight go to the engine together.

vLLM is an optional extra (``pip install 'arcsynth[vllm]'``) imported only by ``start()``.
Requests that arrive within a short window, or while a batch is running, are collected
and submitted as one ``llm.chat(conversations, [SamplingParams, ...])`` call in a worker
thread; ``SamplingParams(n=k)`` samples k completions from one pass over each prompt, and
prefix caching shares the KV cache of the common system prompt and task text.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from agent.backends.base import BackendError, Completion, Message, SamplingParams
from agent.backends.chat_format import as_dicts, render_with_template, trim_at_stop
from agent.backends.embedded import DEFAULT_MODEL, cache_root, is_embedded_alias, resolve_embedded_model
from agent.backends.weights import cached_weights_hash

INSTALL_HINT = "pip install 'arcsynth[vllm]'"


@dataclass
class _Pending:
    messages: list[Message]
    params: SamplingParams
    future: asyncio.Future = field(repr=False)


class VLLMBackend:
    """``vllm.LLM`` in this process, fed by a batcher that merges concurrent requests.

    ``llm_class`` and ``sampling_params_class`` default to ``vllm.LLM`` and
    ``vllm.SamplingParams``; they are parameters so the batching can be exercised
    without a GPU.
    """

    name = "vllm"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        batch_window_s: float = 0.02,
        max_batch_prompts: int = 512,
        llm_class: Callable[..., Any] | None = None,
        sampling_params_class: Callable[..., Any] | None = None,
    ):
        self.model_id = model
        self.dtype = dtype
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.enable_prefix_caching = enable_prefix_caching
        self.seed = seed
        self.batch_window_s = batch_window_s
        self.max_batch_prompts = max_batch_prompts
        self._llm_class = llm_class
        self._sp_class = sampling_params_class
        self._llm: Any = None
        self._path: str | None = None
        self._weights_sha256: str | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._batcher: asyncio.Task | None = None
        self._batcher_loop: asyncio.AbstractEventLoop | None = None
        self._running: list[_Pending] = []  # the batch in the engine now
        # Engine calls made, and prompts per call: what the batching achieved (run statistics).
        self.batch_sizes: list[int] = []

    # -- lifecycle -----------------------------------------------------------------------

    def _import_vllm(self) -> None:
        if self._llm_class is not None and self._sp_class is not None:
            return
        try:
            from vllm import LLM
            from vllm import SamplingParams as VSamplingParams
        except ImportError as exc:
            raise BackendError(f"backend 'vllm' needs vLLM, which is not installed ({exc}); {INSTALL_HINT} on a CUDA machine") from exc
        self._llm_class = self._llm_class or LLM
        self._sp_class = self._sp_class or VSamplingParams

    def _engine_kwargs(self, path: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            model=path,
            dtype=self.dtype,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            enable_prefix_caching=self.enable_prefix_caching,
            seed=self.seed,
        )
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        return kwargs

    def _load_sync(self) -> None:
        self._import_vllm()
        path = str(resolve_embedded_model(self.model_id)) if is_embedded_alias(self.model_id) else self.model_id
        try:
            self._llm = self._llm_class(**self._engine_kwargs(path))
        except Exception as exc:  # noqa: BLE001 - reported with the model named
            raise BackendError(f"vLLM could not load model {self.model_id!r}: {type(exc).__name__}: {exc}") from exc
        self._path = path
        local = Path(path).expanduser()
        if local.is_dir():
            self._weights_sha256 = cached_weights_hash(local, cache_root() / "weights-hashes")

    async def start(self) -> None:
        if self._llm is None:
            await asyncio.to_thread(self._load_sync)

    async def close(self) -> None:
        waiting = list(self._running)  # read before cancelling: the batcher clears it on the way out
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
            self._batcher = None
        if self._queue is not None:
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(BackendError("vLLM backend closed before the request finished"))
        self._running = []
        self._queue = None
        self._llm = None
        torch = sys.modules.get("torch")  # loaded by vLLM; never imported just to tidy up
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- batching ------------------------------------------------------------------------

    def _ensure_batcher(self) -> asyncio.Queue[_Pending]:
        loop = asyncio.get_running_loop()
        if self._batcher is None or self._batcher.done() or self._batcher_loop is not loop:
            self._queue = asyncio.Queue()
            self._batcher_loop = loop
            self._batcher = loop.create_task(self._batch_forever(self._queue), name="vllm-batcher")
        assert self._queue is not None
        return self._queue

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str = "") -> list[Completion]:
        if self._llm is None:
            raise BackendError(f"model {self.model_id!r}: generate() called before start()")
        queue = self._ensure_batcher()
        future = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Pending(messages, params, future))
        return await future

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        """The next batch: the first waiting request, those that arrive within the window, and any backlog."""
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.batch_window_s
        while len(batch) < self.max_batch_prompts:
            # The backlog that built up while the previous batch ran is taken at once.
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return [p for p in batch if not p.future.done()]  # callers that gave up are skipped

    async def _batch_forever(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = await self._collect(queue)
            if not batch:
                continue
            self._running = batch
            try:
                results = await asyncio.to_thread(self._run_batch, batch)
            except Exception as exc:  # noqa: BLE001 - every caller gets the reason
                error = exc if isinstance(exc, BackendError) else BackendError(f"vLLM failed: {type(exc).__name__}: {exc}")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            finally:
                self._running = []
            for pending, result in zip(batch, results):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    def _sampling_params(self, params: SamplingParams) -> Any:
        # Greedy samples are identical: one is generated and copied.
        n = 1 if params.temperature == 0 else params.n
        return self._sp_class(**params.request_fields(n=n, seed=params.seed))

    def _run_batch(self, batch: list[_Pending]) -> list[list[Completion] | BaseException]:
        """One engine call for the whole batch; if it fails, each prompt alone, so one bad prompt fails only itself."""
        try:
            return self._engine_call(batch)
        except Exception as exc:  # noqa: BLE001
            if len(batch) == 1:
                return [BackendError(f"vLLM failed on model {self.model_id!r}: {type(exc).__name__}: {exc}")]
        results: list[list[Completion] | BaseException] = []
        for pending in batch:
            try:
                results.extend(self._engine_call([pending]))
            except Exception as exc:  # noqa: BLE001
                results.append(BackendError(f"vLLM failed on model {self.model_id!r}: {type(exc).__name__}: {exc}"))
        return results

    def _engine_call(self, batch: list[_Pending]) -> list[list[Completion]]:
        conversations = [as_dicts(p.messages) for p in batch]
        sampling = [self._sampling_params(p.params) for p in batch]
        started = time.perf_counter()
        outputs = self._llm.chat(conversations, sampling_params=sampling, use_tqdm=False)
        latency = time.perf_counter() - started
        self.batch_sizes.append(len(batch))
        if len(outputs) != len(batch):
            raise BackendError(f"vLLM returned {len(outputs)} outputs for {len(batch)} prompts")
        return [self._completions(out, p.params, latency) for out, p in zip(outputs, batch)]

    def _completions(self, request_output: Any, params: SamplingParams, latency: float) -> list[Completion]:
        prompt_tokens = len(request_output.prompt_token_ids or [])
        completions = []
        for out in request_output.outputs:
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
        if self._llm is None:
            raise BackendError(f"model {self.model_id!r}: count_tokens() needs start() first (the tokenizer lives in the engine)")
        tokenizer = self._llm.get_tokenizer()
        prompt = render_with_template(tokenizer, messages)
        return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])

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
            "engine": f"{getattr(self._llm_class, '__module__', '?')}.{getattr(self._llm_class, '__name__', '?')}",
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_model_len": self.max_model_len,
            "enable_prefix_caching": self.enable_prefix_caching,
            "engine_seed": self.seed,
        }
