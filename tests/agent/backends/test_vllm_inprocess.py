"""VLLMBackend's batching, with a test double of ``vllm.LLM`` (vLLM itself needs a CUDA box and is not under test)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pytest

from agent.backends.base import BackendError, Message, SamplingParams
from agent.backends.vllm_inprocess import VLLMBackend


@dataclass
class FakeSamplingParams:
    """Test double of ``vllm.SamplingParams``: keeps the keyword arguments it was given."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    top_k: int | None = None
    min_p: float | None = None
    stop: list[str] | None = None


@dataclass
class FakeCompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput] = field(default_factory=list)


class FakeLLM:
    """Test double of ``vllm.LLM``: records each ``chat`` call and answers by echoing the last user message.

    ``gate`` (a threading.Event), when set up, holds a ``chat`` call until released, so a
    test can submit requests while a batch is running. A conversation containing
    "POISON" makes the whole call raise, as vLLM does for a prompt longer than the context.
    """

    instances: list["FakeLLM"] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple[list, list]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        FakeLLM.instances.append(self)

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        assert use_tqdm is False
        assert isinstance(sampling_params, list) and len(sampling_params) == len(messages)
        self.calls.append((messages, sampling_params))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if any("POISON" in m["content"] for conv in messages for m in conv):
            raise ValueError("prompt is longer than the maximum model length")
        results = []
        for conv, sp in zip(messages, sampling_params):
            last = conv[-1]["content"]
            outs = [FakeCompletionOutput(f"{last}#{i}", list(range(3 + i)), "stop") for i in range(sp.n)]
            results.append(FakeRequestOutput(prompt_token_ids=list(range(len(last))), outputs=outs))
        return results


def _backend(**kwargs) -> VLLMBackend:
    return VLLMBackend("some/model", llm_class=FakeLLM, sampling_params_class=FakeSamplingParams, **kwargs)


def _ask(text: str) -> list[Message]:
    return [Message(role="system", content="sys"), Message(role="user", content=text)]


async def test_engine_is_built_with_prefix_caching_and_settings():
    backend = VLLMBackend(
        "some/model", max_model_len=4096, gpu_memory_utilization=0.8, llm_class=FakeLLM, sampling_params_class=FakeSamplingParams
    )
    await backend.start()
    llm = backend._llm
    assert llm.kwargs["model"] == "some/model"
    assert llm.kwargs["enable_prefix_caching"] is True
    assert llm.kwargs["max_model_len"] == 4096 and llm.kwargs["gpu_memory_utilization"] == 0.8
    await backend.close()


async def test_concurrent_requests_go_to_the_engine_as_one_batch():
    backend = _backend(batch_window_s=0.05)
    await backend.start()
    params = [SamplingParams(n=k, max_tokens=100 + k, seed=k) for k in (1, 2, 3, 4)]
    results = await asyncio.gather(*(backend.generate(_ask(f"task{k}"), p, f"t{k}") for k, p in zip((1, 2, 3, 4), params)))
    llm = backend._llm
    assert len(llm.calls) == 1 and backend.batch_sizes == [4]
    conversations, sampling = llm.calls[0]
    assert [c[-1]["content"] for c in conversations] == ["task1", "task2", "task3", "task4"]
    assert [(s.n, s.max_tokens, s.seed) for s in sampling] == [(1, 101, 1), (2, 102, 2), (3, 103, 3), (4, 104, 4)]
    # Every caller gets its own prompt's completions, n of them.
    for k, completions in zip((1, 2, 3, 4), results):
        assert [c.text for c in completions] == [f"task{k}#{i}" for i in range(k)]
        assert [c.completion_tokens for c in completions] == [3 + i for i in range(k)]
        assert all(c.prompt_tokens == len(f"task{k}") and c.finish_reason == "stop" for c in completions)
    await backend.close()


async def _engine_busy_with(text: str):
    """A started backend whose (gated) engine is in the middle of one request for ``text``."""
    backend = _backend(batch_window_s=0.0)
    await backend.start()
    llm = backend._llm
    llm.gate = threading.Event()
    request = asyncio.create_task(backend.generate(_ask(text), SamplingParams(), "a"))
    await asyncio.to_thread(llm.entered.wait, 5)
    return backend, llm, request


async def test_requests_arriving_during_a_batch_form_the_next_batch():
    backend, llm, first = await _engine_busy_with("first")
    later = [asyncio.create_task(backend.generate(_ask(f"later{i}"), SamplingParams(), f"b{i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    llm.gate.set()
    await asyncio.gather(first, *later)
    assert backend.batch_sizes == [1, 3]
    assert [c[-1]["content"] for c in llm.calls[1][0]] == ["later0", "later1", "later2"]
    await backend.close()


async def test_sampling_params_always_cap_tokens_and_omit_unset_extras():
    backend = _backend()
    await backend.start()
    await backend.generate(_ask("x"), SamplingParams(n=2, temperature=0.7, top_p=0.9, stop=["```"], max_tokens=333), "x")
    sp = backend._llm.calls[0][1][0]
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.stop) == (2, 0.7, 0.9, 333, ["```"])
    assert sp.top_k is None and sp.min_p is None and sp.seed is None
    await backend.generate(_ask("y"), SamplingParams(top_k=40, min_p=0.1, seed=9), "y")
    sp = backend._llm.calls[1][1][0]
    assert (sp.top_k, sp.min_p, sp.seed) == (40, 0.1, 9)
    await backend.close()


async def test_greedy_samples_are_generated_once_and_copied():
    backend = _backend()
    await backend.start()
    completions = await backend.generate(_ask("g"), SamplingParams(n=3, temperature=0.0), "g")
    assert backend._llm.calls[0][1][0].n == 1
    assert [c.text for c in completions] == ["g#0"] * 3
    await backend.close()


async def test_a_failing_prompt_fails_only_its_own_request():
    backend = _backend(batch_window_s=0.05)
    await backend.start()
    good, bad = await asyncio.gather(
        backend.generate(_ask("fine"), SamplingParams(), "ok"),
        backend.generate(_ask("POISON"), SamplingParams(), "bad"),
        return_exceptions=True,
    )
    assert [c.text for c in good] == ["fine#0"]
    assert isinstance(bad, BackendError) and "maximum model length" in str(bad)
    await backend.close()


async def test_close_fails_requests_still_waiting_instead_of_leaving_them_hanging():
    backend, llm, running = await _engine_busy_with("running")
    queued = asyncio.create_task(backend.generate(_ask("queued"), SamplingParams(), "b"))
    await asyncio.sleep(0.02)
    await backend.close()
    llm.gate.set()
    for task in (running, queued):
        with pytest.raises(BackendError, match="closed"):
            await asyncio.wait_for(task, 5)


async def test_missing_vllm_is_a_clear_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(BackendError, match=r"pip install 'arcsynth\[vllm\]'"):
        await VLLMBackend("some/model").start()


async def test_generate_before_start_and_count_tokens_before_start_are_errors():
    backend = _backend()
    with pytest.raises(BackendError, match="before start"):
        await backend.generate(_ask("x"), SamplingParams(), "x")
    with pytest.raises(BackendError, match="start"):
        backend.count_tokens(_ask("x"))


def test_importing_the_backends_imports_neither_vllm_nor_torch():
    code = (
        "import sys, agent.backends, agent.backends.vllm_inprocess, agent.backends.openai_server, agent.backends.hf_local\n"
        "from agent.backends import ModelConfig, make_backend\n"
        "make_backend(ModelConfig(backend='vllm', model='m'))\n"
        "assert 'vllm' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
