"""ModelConfig validation and make_backend."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
from pydantic import ValidationError

from agent.backends import DEFAULT_MODEL, Backend, ModelConfig, make_backend
from agent.backends.hf_local import TransformersBackend
from agent.backends.openai_server import OpenAIBackend
from agent.backends.vllm_inprocess import VLLMBackend


def test_default_is_the_embedded_model_in_process():
    cfg = ModelConfig()
    assert (cfg.backend, cfg.model, DEFAULT_MODEL) == ("transformers", "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b")
    backend = make_backend(cfg)
    assert isinstance(backend, TransformersBackend) and isinstance(backend, Backend)
    assert backend.model_id == "qwen2.5-coder-0.5b"


@pytest.mark.parametrize(
    "fields, names",
    [
        ({"backend": "ollama"}, ["backend", "'transformers'", "'openai'", "'vllm'", "'replay'"]),
        ({"endpoint": "responses"}, ["endpoint", "'chat'", "'completions'"]),
        ({"device": "gpu"}, ["device", "cuda:N"]),
        ({"dtype": "fp8"}, ["dtype", "'bfloat16'"]),
        ({"concurrency": 0}, ["concurrency", "greater than or equal to 1"]),
        ({"gpu_memory_utilization": 1.5}, ["gpu_memory_utilization", "less than or equal to 1"]),
        ({"modle": "x"}, ["modle", "Extra inputs are not permitted"]),
        ({"api_key_env": "sk-abc123"}, ["api_key_env", "NAME of an environment variable"]),
        ({"backend": "openai"}, ["base_url is required when backend = 'openai'"]),
        ({"backend": "replay"}, ["replay_dir is required"]),
    ],
)
def test_bad_fields_are_named_with_what_is_allowed(fields, names):
    with pytest.raises(ValidationError) as err:
        ModelConfig(**fields)
    message = str(err.value)
    for name in names:
        assert name in message


def test_openai_config_builds_the_http_client():
    cfg = ModelConfig(backend="openai", model="Qwen/Qwen2.5-Coder-7B-Instruct", base_url="http://gpu-box:8000",
                      endpoint="completions", api_key_env="VLLM_KEY", concurrency=3, max_retries=1)
    backend = make_backend(cfg)
    assert isinstance(backend, OpenAIBackend)
    assert (backend.base_url, backend.endpoint, backend.api_key_env, backend.concurrency, backend.max_retries) == (
        "http://gpu-box:8000/v1", "completions", "VLLM_KEY", 3, 1)


def test_vllm_config_builds_the_in_process_engine_without_importing_vllm():
    backend = make_backend(ModelConfig(backend="vllm", model="m", tensor_parallel_size=2, max_model_len=8192))
    assert isinstance(backend, VLLMBackend)
    assert (backend.tensor_parallel_size, backend.max_model_len, backend.enable_prefix_caching) == (2, 8192, True)


def test_replay_config_builds_the_replay_backend(tmp_path):
    replay = pytest.importorskip("agent.backends.replay")
    backend = make_backend(ModelConfig(backend="replay", replay_dir=tmp_path))
    assert isinstance(backend, replay.ReplayBackend)


def test_transformers_threads_default_to_all_cores_but_one_and_pass_through():
    from agent.backends.hf_local import _cpu_cores

    assert ModelConfig().threads is None
    assert make_backend(ModelConfig()).threads == max(1, _cpu_cores() - 1)
    assert make_backend(ModelConfig(threads=3)).threads == 3
    assert make_backend(ModelConfig(threads=0)).threads is None  # every core: the backend uses them all
    with pytest.raises(ValidationError, match="threads"):
        ModelConfig(threads=-1)


@pytest.mark.slow
async def test_configured_threads_reach_torch_where_it_generates(smollm2_folder):
    import torch

    from agent.backends.base import Message, SamplingParams

    # Loading and generation run in executor threads, and torch keeps a thread
    # count per OS thread: check it there. One executor thread, so it is that one.
    pool = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(pool)
    before = await loop.run_in_executor(pool, torch.get_num_threads)
    wanted = 1 if before != 1 else 2
    backend = make_backend(ModelConfig(model=str(smollm2_folder), device="cpu", threads=wanted))
    try:
        await backend.start()
        await loop.run_in_executor(pool, torch.set_num_threads, before)  # as if another library changed it
        await backend.generate([Message(role="user", content="Hi")], SamplingParams(max_tokens=2, seed=0), "x")
        assert await loop.run_in_executor(pool, torch.get_num_threads) == wanted
        assert backend.provenance()["threads"] == wanted
    finally:
        await backend.close()
        await loop.run_in_executor(pool, torch.set_num_threads, before)
