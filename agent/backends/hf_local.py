"""In-process Hugging Face model (CPU or GPU): the embedded Qwen2.5-Coder-0.5B by default."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from agent.backends.base import BackendError, Completion, Message, SamplingParams
from agent.backends.chat_format import render_with_template, trim_at_stop
from agent.backends.embedded import (
    DEFAULT_MODEL,
    MANIFEST_NAME,
    cache_root,
    embedded_model_id,
    invalidate_embedded_cache,
    is_embedded_alias,
    read_manifest,
    resolve_embedded_model,
)
from agent.backends.weights import cached_weights_hash


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_beside_sandbox() -> int:
    """Torch threads for a model sharing the machine with the sandbox: all cores but one.

    Torch threads that must share a core with sandbox workers wait on each other,
    and generation slows down several times over on a small machine.
    """
    return max(1, _cpu_cores() - 1)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so torch runs a model in bfloat16
    about twice as fast as in float32; elsewhere bfloat16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and warnings; errors still reach stderr.

    Our CLI shows its own progress; tqdm bars ("Loading weights: 100%|...") and
    generation warnings would be written into its output, even to a log file.
    TRANSFORMERS_VERBOSITY, when set, still wins.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # hub download bars too
    if not os.environ.get("TRANSFORMERS_VERBOSITY"):
        hf_logging.set_verbosity_error()


def _hub_snapshot(model_id: str) -> Path | None:
    """The local snapshot folder of a hub model (for hashing its weights), if it is in the cache."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - provenance then records no weights hash, nothing else changes
        return None


class TransformersBackend:
    """A causal LM run in this process with ``transformers``.

    ``generate`` runs the blocking ``model.generate`` in a worker thread, one request at a
    time, so the event loop stays free to verify programs while the model writes.
    """

    name = "transformers"

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto", threads: int | None = None):
        self.model_id = model
        self._device_setting = device
        self._dtype_setting = dtype
        self.threads = threads
        """Torch threads on CPU; None: all cores."""
        self._path: Path | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._dtype: Any = None
        self._weights_sha256: str | None = None
        # asyncio.Lock binds to one event loop; keep one per loop so a backend can outlive a loop.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        self._thread_lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------

    def _resolve_path(self) -> Path | str:
        if is_embedded_alias(self.model_id):
            return resolve_embedded_model(self.model_id)
        local = Path(self.model_id).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise BackendError(f"model {self.model_id!r}: folder has no config.json, so it is not a Hugging Face model folder")
            # A local folder must never wait on the hub: offline, from_pretrained fails fast.
            os.environ["HF_HUB_OFFLINE"] = "1"
            return local
        if self.model_id.startswith(("/", "./", "../", "~")) or self.model_id.count("/") > 1:
            # Hub ids are 'name' or 'org/name': this was meant as a local folder.
            raise BackendError(f"model folder {self.model_id!r} does not exist")
        return self.model_id  # a hub id: resolved from the local Hugging Face cache or the hub

    def _hub_reachable_or_raise(self, reason: Exception) -> None:
        """A hub id missing from the local cache: fail fast when the hub cannot be reached.

        huggingface_hub retries an unreachable host for ~50 s per file; one short probe
        turns that into an immediate, clear error.
        """
        import urllib.error
        import urllib.request

        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise BackendError(
                f"model {self.model_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {reason}"
            ) from reason
        try:
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT
        except ImportError:
            endpoint = "https://huggingface.co"
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=5.0).close()
        except urllib.error.HTTPError:
            pass  # it answered: reachable
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"model {self.model_id!r} is not in the local Hugging Face cache and {endpoint} cannot be reached "
                f"({type(exc).__name__}); download it first or give a local model folder"
            ) from exc

    def _pick_device_dtype(self) -> tuple[str, Any]:
        import torch

        device = self._device_setting
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"model {self.model_id!r}: device {device!r} requested but CUDA is not available")
        if self._dtype_setting == "auto":
            dtype = torch.bfloat16 if device != "cpu" or cpu_has_native_bf16() else torch.float32
        else:
            dtype = getattr(torch, self._dtype_setting)
        return device, dtype

    def _apply_threads(self, device: str) -> None:
        # torch's thread count is kept per OS thread once a thread has used it, and
        # loading and generation run in executor threads: set it in each of them.
        if device == "cpu":
            import torch

            want = self.threads or _cpu_cores()
            if torch.get_num_threads() != want:
                torch.set_num_threads(want)

    def _load_sync(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        device, dtype = self._pick_device_dtype()
        self._apply_threads(device)
        path = self._resolve_path()
        local_only = isinstance(path, Path)
        if not local_only:
            try:  # a hub id already in the local cache loads without touching the network
                AutoTokenizer.from_pretrained(path, local_files_only=True)
                local_only = True
            except Exception as exc:  # noqa: BLE001
                self._hub_reachable_or_raise(exc)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local_only)
        except Exception as exc:  # noqa: BLE001
            if is_embedded_alias(self.model_id) and isinstance(path, Path):
                # A cache damaged after its manifest was written (same sizes, bad bytes): convert again once.
                invalidate_embedded_cache(path)
                path = resolve_embedded_model(self.model_id)
                try:
                    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
                except Exception as exc2:  # noqa: BLE001
                    raise BackendError(f"model {self.model_id!r} will not load from {path}: {exc2}") from exc2
            else:
                raise BackendError(f"model {self.model_id!r} will not load: {exc}") from exc
        if tokenizer.chat_template is None:
            raise BackendError(f"model {self.model_id!r} has no chat template; use an instruct/chat model")
        model.to(device)
        model.eval()
        self._model, self._tokenizer = model, tokenizer
        self._device, self._dtype = device, dtype
        self._path = path if isinstance(path, Path) else _hub_snapshot(path)
        self._weights_sha256 = self._compute_weights_hash()

    def _compute_weights_hash(self) -> str | None:
        if self._path is None:
            return None
        manifest = read_manifest(self._path) if (self._path / MANIFEST_NAME).exists() else None
        if manifest is not None:
            return manifest["weights_sha256"]
        if self._path.is_dir():
            return cached_weights_hash(self._path, cache_root() / "weights-hashes")
        return None

    async def start(self) -> None:
        if self._model is None:
            await asyncio.to_thread(self._load_sync)

    async def close(self) -> None:
        on_gpu = self._device is not None and self._device != "cpu"
        self._model = None
        self._tokenizer = None
        if on_gpu:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- generation ----------------------------------------------------------------------

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def generate(self, messages: list[Message], params: SamplingParams, request_id: str = "") -> list[Completion]:
        if self._model is None:
            raise BackendError(f"model {self.model_id!r}: generate() called before start()")
        cancelled = threading.Event()
        async with self._loop_lock():
            try:
                return await asyncio.to_thread(self._generate_sync, messages, params, cancelled)
            except asyncio.CancelledError:
                # The thread cannot be interrupted, but generate() checks this flag after every token.
                cancelled.set()
                raise

    def _generation_config(self, params: SamplingParams, max_new_tokens: int) -> Any:
        from transformers import GenerationConfig

        base = self._model.generation_config
        eos = base.eos_token_id if base.eos_token_id is not None else self._tokenizer.eos_token_id
        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = eos[0] if isinstance(eos, list) else eos
        # generate() fills every field left None from the model's generation_config, so each
        # knob that changes the distribution is set here: a model's own defaults (top_k=20,
        # repetition_penalty=1.05, ...) must not apply silently.
        kwargs: dict[str, Any] = dict(
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            max_new_tokens=max_new_tokens,
            # Greedy decoding gives n identical samples: generate one and copy it.
            num_return_sequences=params.n if params.temperature > 0 else 1,
            eos_token_id=eos,
            pad_token_id=pad,
            bos_token_id=base.bos_token_id,
        )
        if params.temperature > 0:
            kwargs.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or 0,
                min_p=params.min_p or 0.0,
                typical_p=1.0,
                epsilon_cutoff=0.0,
                eta_cutoff=0.0,
            )
        else:
            kwargs["do_sample"] = False
        if params.stop:
            kwargs["stop_strings"] = list(params.stop)
        return GenerationConfig(**kwargs)

    def _generate_sync(self, messages: list[Message], params: SamplingParams, cancelled: threading.Event | None = None) -> list[Completion]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), bool(cancelled and cancelled.is_set()), dtype=torch.bool, device=input_ids.device)

        with self._thread_lock:
            assert self._device is not None
            self._apply_threads(self._device)
            tokenizer, model = self._tokenizer, self._model
            prompt = render_with_template(tokenizer, messages)
            enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            prompt_len = int(enc["input_ids"].shape[1])
            context = getattr(model.config, "max_position_embeddings", None)
            max_new = params.max_tokens
            if context is not None:
                if prompt_len >= context:
                    raise BackendError(f"model {self.model_id!r}: prompt of {prompt_len} tokens fills its {context}-token context")
                max_new = min(max_new, context - prompt_len)
            gen_config = self._generation_config(params, max_new)
            if params.seed is not None:
                # Seeds every device's generator; calls are serialised, so a seed fixes the samples.
                torch.manual_seed(params.seed)
            started = time.perf_counter()
            input_ids = enc["input_ids"].to(self._device)
            attention_mask = enc["attention_mask"].to(self._device)
            with torch.inference_mode():
                shared = self._shared_prompt_cache(model, input_ids, gen_config.num_return_sequences)
                if shared is not None:
                    # The prompt was processed once; its cache, copied per sample, covers all
                    # but the last prompt token, which generate() feeds itself.
                    n = gen_config.num_return_sequences
                    gen_config.num_return_sequences = 1
                    input_ids, attention_mask = input_ids.repeat(n, 1), attention_mask.repeat(n, 1)
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=gen_config,
                    tokenizer=tokenizer,
                    stopping_criteria=StoppingCriteriaList([_StopWhenCancelled()]),
                    **(shared or {}),
                )
            latency = time.perf_counter() - started
            new_tokens = out[:, prompt_len:].tolist()
            completions = [self._to_completion(row, params, max_new, prompt_len, gen_config, latency) for row in new_tokens]
            if len(completions) < params.n:  # greedy
                completions = [completions[0].model_copy() for _ in range(params.n)]
            return completions

    @staticmethod
    def _shared_prompt_cache(model: Any, input_ids: Any, n: int) -> dict[str, Any] | None:
        """The prompt's key/value cache computed once and repeated for ``n`` samples, as generate() kwargs.

        ``generate(num_return_sequences=n)`` copies the prompt n times before its first
        forward pass, so a CPU spends n times the prompt's compute before the first new
        token (83 s instead of 13 s for a 500-token prompt and n=6 with Qwen2.5-Coder-0.5B
        on a busy core). None when there is nothing to share or the cache cannot be repeated.
        """
        if n <= 1 or input_ids.shape[1] < 2:
            return None
        out = model(input_ids=input_ids[:, :-1], use_cache=True)
        # transformers 5.x names it `cache`, earlier versions `past_key_values`.
        name = "cache" if "cache" in out.keys() else "past_key_values"
        cache = out[name]
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None
        cache.batch_repeat_interleave(n)
        return {name: cache}

    def _to_completion(self, row: list[int], params: SamplingParams, max_new: int, prompt_len: int, gen_config: Any, latency: float) -> Completion:
        eos_ids = gen_config.eos_token_id
        eos_set = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
        ended_by_eos = False
        for i, tok in enumerate(row):
            if tok in eos_set:
                row, ended_by_eos = row[: i + 1], True
                break
        else:
            # Rows that stopped early on a stop string are padded up to the longest row.
            pad = gen_config.pad_token_id
            while row and row[-1] == pad:
                row = row[:-1]
        text = self._tokenizer.decode(row, skip_special_tokens=True)
        text, hit_stop = trim_at_stop(text, params.stop)
        if ended_by_eos or hit_stop:
            reason = "stop"
        elif len(row) >= max_new:
            reason = "length"
        else:
            reason = "stop"
        return Completion(text=text, prompt_tokens=prompt_len, completion_tokens=len(row), finish_reason=reason, latency_s=latency)

    # -- accounting ----------------------------------------------------------------------

    def count_tokens(self, messages: list[Message]) -> int:
        if self._tokenizer is None:
            from agent.backends.chat_format import load_tokenizer

            self._tokenizer = load_tokenizer(str(self._resolve_path()))
        prompt = render_with_template(self._tokenizer, messages)
        return len(self._tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def provenance(self) -> dict:
        import torch
        import transformers

        return {
            "backend": self.name,
            "model": self.model_id,
            "model_name": embedded_model_id(self.model_id) if is_embedded_alias(self.model_id) else self.model_id,
            "path": str(self._path) if self._path else None,
            "weights_sha256": self._weights_sha256,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": self._device,
            "dtype": str(self._dtype).removeprefix("torch.") if self._dtype is not None else None,
            "threads": (self.threads or _cpu_cores()) if self._device == "cpu" else None,
        }
