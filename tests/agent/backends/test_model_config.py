"""ModelConfig validation and make_backend."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.backends import DEFAULT_MODEL, Backend, ModelConfig, make_backend
from agent.backends.hf_local import TransformersBackend
from agent.backends.openai_server import OpenAIBackend
from agent.backends.vllm_inprocess import VLLMBackend


def test_default_is_the_embedded_model_in_process():
    cfg = ModelConfig()
    assert (cfg.backend, cfg.model, DEFAULT_MODEL) == ("transformers", "smollm2", "smollm2")
    backend = make_backend(cfg)
    assert isinstance(backend, TransformersBackend) and isinstance(backend, Backend)
    assert backend.model_id == "smollm2"


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
