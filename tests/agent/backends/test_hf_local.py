"""TransformersBackend with the real embedded SmolLM2-135M-Instruct on CPU."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from agent.backends.base import BackendError, Message, SamplingParams
from agent.backends.embedded import MANIFEST_NAME
from agent.backends.hf_local import TransformersBackend
from agent.backends.weights import sha256_file

PROMPT = [
    Message(role="system", content="You write Python."),
    Message(role="user", content="Write a Python function that returns the transpose of a grid (a list of lists)."),
]

slow = pytest.mark.slow


@slow
async def test_n_sampled_completions_with_token_counts(smollm2_backend: TransformersBackend):
    params = SamplingParams(n=4, temperature=0.9, max_tokens=12, seed=11)
    completions = await smollm2_backend.generate(PROMPT, params, "t/r0/q0")
    assert len(completions) == 4
    prompt_tokens = smollm2_backend.count_tokens(PROMPT)
    tokenizer = smollm2_backend._tokenizer
    for c in completions:
        assert c.prompt_tokens == prompt_tokens
        assert 1 <= c.completion_tokens <= 12
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert c.completion_tokens == 12
            # All 12 generated tokens are text (none is the end-of-turn token).
            assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) == pytest.approx(12, abs=2)
        assert c.latency_s > 0
    # Sampled, not copied: four samples of 12 tokens at temperature 0.9 differ.
    assert len({c.text for c in completions}) > 1


@slow
async def test_fixed_seed_reproduces_samples(smollm2_backend: TransformersBackend):
    params = SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=1234)
    first = await smollm2_backend.generate(PROMPT, params, "a")
    second = await smollm2_backend.generate(PROMPT, params, "b")
    other = await smollm2_backend.generate(PROMPT, params.model_copy(update={"seed": 99}), "c")
    assert [c.text for c in first] == [c.text for c in second]
    assert [c.text for c in other] != [c.text for c in first]


@slow
async def test_max_tokens_is_a_hard_cap(smollm2_backend: TransformersBackend):
    completions = await smollm2_backend.generate(PROMPT, SamplingParams(n=2, temperature=0.7, max_tokens=5, seed=3), "x")
    assert all(c.completion_tokens <= 5 for c in completions)
    assert [c.finish_reason for c in completions] == ["length", "length"]


@slow
async def test_stop_string_ends_the_completion_before_it(smollm2_backend: TransformersBackend):
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=24)
    [free] = await smollm2_backend.generate(PROMPT, greedy, "free")
    words = free.text.split()
    assert len(words) > 4, free.text
    stop = words[3]
    expected = free.text[: free.text.find(stop)]
    stopped = await smollm2_backend.generate(PROMPT, greedy.model_copy(update={"stop": [stop], "n": 3}), "stopped")
    assert len(stopped) == 3
    for c in stopped:
        assert c.text == expected
        assert c.finish_reason == "stop"
        assert c.completion_tokens < free.completion_tokens


@slow
async def test_generation_leaves_the_event_loop_free(smollm2_backend: TransformersBackend):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    params = SamplingParams(n=1, temperature=0.5, max_tokens=8, seed=5)
    # Two requests at once: serialised by the backend, both answered.
    results = await asyncio.gather(
        smollm2_backend.generate(PROMPT, params, "p1"), smollm2_backend.generate(PROMPT, params, "p2")
    )
    task.cancel()
    assert [len(r) for r in results] == [1, 1]
    assert results[0][0].text == results[1][0].text  # same seed, same sample: calls did not interleave
    assert ticks >= 5


@slow
def test_provenance_names_model_and_exact_weights(smollm2_backend: TransformersBackend, smollm2_folder):
    prov = smollm2_backend.provenance()
    manifest = json.loads((smollm2_folder / MANIFEST_NAME).read_text())
    assert prov["weights_sha256"] == manifest["weights_sha256"] == sha256_file(smollm2_folder / "model.safetensors")
    from agent.backends.hf_local import cpu_has_native_bf16

    # dtype 'auto' on CPU: bfloat16 where the CPU computes it natively, else float32.
    assert prov["device"] == "cpu" and prov["dtype"] == ("bfloat16" if cpu_has_native_bf16() else "float32")
    assert prov["model"] == "smollm2" and prov["path"] == str(smollm2_folder)
    assert prov["transformers"] and prov["torch"]


@pytest.fixture(autouse=True)
def restore_hub_offline(monkeypatch):
    # Loading a local folder sets HF_HUB_OFFLINE for the process; undo it after each test.
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))


async def test_folder_that_is_not_a_model_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="no config.json"):
        await TransformersBackend(str(tmp_path), device="cpu").start()


async def test_model_that_will_not_load_names_model_and_reason(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(BackendError) as err:
        await TransformersBackend(str(tmp_path), device="cpu").start()
    assert str(tmp_path) in str(err.value) and "will not load" in str(err.value)


async def test_generate_before_start_is_a_backend_error():
    with pytest.raises(BackendError, match="before start"):
        await TransformersBackend("smollm2").generate(PROMPT, SamplingParams(), "x")


async def test_uncached_hub_model_offline_fails_fast_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BackendError, match=r"'someone/not-cached-model' is not in the local Hugging Face cache and HF_HUB_OFFLINE"):
        await asyncio.wait_for(TransformersBackend("someone/not-cached-model", device="cpu").start(), 60)


async def load_and_sample_once(folder) -> tuple[TransformersBackend, object]:
    """A fresh backend on ``folder``: loaded, asked for two tokens, closed."""
    backend = TransformersBackend(str(folder), device="cpu")
    await backend.start()
    try:
        [c] = await backend.generate(PROMPT, SamplingParams(max_tokens=2, seed=0), "x")
    finally:
        await backend.close()
    return backend, c


@slow
async def test_any_local_model_folder_loads_offline(smollm2_folder, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    backend, c = await load_and_sample_once(smollm2_folder)
    assert c.completion_tokens <= 2
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # a local folder never waits on the hub
    assert backend.provenance()["path"] == str(smollm2_folder)


@slow
async def test_cancelled_request_stops_generating_and_frees_the_model(smollm2_backend: TransformersBackend):
    long = asyncio.create_task(smollm2_backend.generate(PROMPT, SamplingParams(n=8, max_tokens=1000, seed=1), "long"))
    await asyncio.sleep(1.0)
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    started = asyncio.get_running_loop().time()
    [c] = await smollm2_backend.generate(PROMPT, SamplingParams(n=1, max_tokens=1, seed=1), "short")
    # 8 x 1000 tokens would take minutes on a CPU; the cancelled request stopped after its current token.
    assert asyncio.get_running_loop().time() - started < 30
    assert c.completion_tokens == 1


def test_model_sampling_defaults_do_not_leak_into_requests():
    """generate() fills unset fields from the model's generation_config; every sampling knob must be set."""
    import types

    from transformers import GenerationConfig

    backend = TransformersBackend("smollm2")
    backend._tokenizer = types.SimpleNamespace(eos_token_id=2, pad_token_id=2)
    # Test double of a model whose own defaults would change the distribution.
    model_defaults = GenerationConfig(eos_token_id=2, bos_token_id=1, top_k=20, top_p=0.8, repetition_penalty=1.05, min_p=0.1, typical_p=0.9)
    backend._model = types.SimpleNamespace(generation_config=model_defaults)
    config = backend._generation_config(SamplingParams(n=3, temperature=0.7), 50)
    config.update(**model_defaults.to_dict(), defaults_only=True)  # what generate() does
    assert (config.top_k, config.top_p, config.repetition_penalty, config.min_p, config.typical_p) == (0, 1.0, 1.0, 0.0, 1.0)
    assert (config.do_sample, config.temperature, config.num_return_sequences, config.max_new_tokens) == (True, 0.7, 3, 50)


@slow
async def test_loading_prints_no_progress_bars_but_errors_still_show(smollm2_folder, monkeypatch, capfd, caplog):
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    # As in a fresh process: transformers' bars and warnings on.
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_warning()
    capfd.readouterr()
    await load_and_sample_once(smollm2_folder)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err, err[:300]
    logger = hf_logging.get_logger("transformers.modeling_utils")
    with caplog.at_level(0):  # pytest's own threshold lets everything through; transformers' decides
        logger.warning("a transformers warning")
        logger.error("a real error from transformers")
    messages = [r.getMessage() for r in caplog.records]
    assert "a real error from transformers" in messages and "a transformers warning" not in messages
