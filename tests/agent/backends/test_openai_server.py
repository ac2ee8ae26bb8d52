"""OpenAIBackend against a real `transformers serve`, and a fault-injecting test double for retries."""

from __future__ import annotations

import json
import socket
import time

import pytest

import agent.backends.openai_server as openai_server
from agent.backends.base import BackendError, Message, SamplingParams
from agent.backends.openai_server import OpenAIBackend, normalise_base_url, topup_seed
from http_double import JSONHandler, LocalServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

PROMPT = [Message(role="user", content="Write a Python function that adds two numbers.")]


# -- the real server ---------------------------------------------------------------------


@pytest.mark.slow
async def test_chat_endpoint_asks_again_when_the_server_ignores_n(transformers_server):
    base_url, model = transformers_server
    # The alias of the embedded model finds it under the folder name the server lists.
    backend = OpenAIBackend("smollm2", base_url=base_url, endpoint="chat")
    await backend.start()
    try:
        completions = await backend.generate(PROMPT, SamplingParams(n=3, temperature=0.8, max_tokens=6, seed=7), "t/r0/q0")
    finally:
        await backend.close()
    assert len(completions) == 3
    assert backend.requests_sent == 3  # transformers serve returns one choice per request
    for c in completions:
        assert c.text.strip()
        assert c.prompt_tokens > 0  # from the server's usage field
        assert 1 <= c.completion_tokens <= 6
        assert c.finish_reason in ("stop", "length")
        assert c.latency_s > 0
    assert backend.model_id == model and backend.provenance()["served_model"]["id"] == model


@pytest.mark.slow
async def test_completions_endpoint_with_local_chat_template(transformers_server):
    base_url, model = transformers_server
    backend = OpenAIBackend(model, base_url=base_url, endpoint="completions", tokenizer="smollm2")
    await backend.start()
    try:
        [c] = await backend.generate(PROMPT, SamplingParams(n=1, max_tokens=8, seed=1), "q")
    finally:
        await backend.close()
    # The server tokenised exactly the prompt our local template rendered.
    assert c.prompt_tokens == backend.count_tokens(PROMPT)
    assert c.completion_tokens == 8 and c.finish_reason == "length"
    assert c.text.strip()
    assert backend.provenance()["token_counts"] == "tokenizer"


@pytest.mark.slow
async def test_unknown_model_lists_the_served_models(transformers_server):
    base_url, model = transformers_server
    backend = OpenAIBackend("qwen-coder-7b", base_url=base_url)
    with pytest.raises(BackendError) as err:
        await backend.start()
    await backend.close()
    assert "'qwen-coder-7b'" in str(err.value) and model in str(err.value)


async def test_unreachable_server_names_the_url():
    port = free_port()  # nothing listens there
    backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}/v1 is unreachable"):
        await backend.start()
    await backend.close()


def test_base_url_gets_v1_only_when_bare():
    assert normalise_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalise_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert normalise_base_url("https://h/api/openai/v1") == "https://h/api/openai/v1"
    # A bare host:port, as the config field's help says, gets the scheme too.
    assert normalise_base_url("localhost:8000") == "http://localhost:8000/v1"
    for bad in ("notaurl", "ftp://h:21/v1", "http://", "http://h:99999/v1"):
        with pytest.raises(BackendError, match="must be an http"):
            normalise_base_url(bad)


def test_topup_seeds_are_deterministic_and_distinct():
    seeds = [topup_seed(42, i) for i in range(1, 50)]
    assert seeds == [topup_seed(42, i) for i in range(1, 50)]
    assert len(set(seeds)) == 49 and 42 not in seeds
    assert topup_seed(None, 1) is None


# -- fault injection: a scripted test double, only for failures a real server will not produce on demand --


class FaultInjectingServer(LocalServer):
    """Test double of an OpenAI-compatible server that plays a script of faults.

    Script steps: an int status code (answered with an error body), "drop" (close the
    connection without answering), ("sleep", s) (answer late), or "ok" (one valid chat
    completion with ``choices_per_request`` choices). The last step repeats.
    """

    def __init__(self, script, choices_per_request: int = 1):
        self.script = list(script)
        self.choices_per_request = choices_per_request
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        double = self

        class Handler(JSONHandler):
            def do_GET(self):
                self._models("double")

            def do_POST(self):
                body = self._body()
                double.requests.append(body)
                double.headers.append(dict(self.headers))
                step = double.script[min(len(double.requests) - 1, len(double.script) - 1)]
                if step == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = "ok"
                if isinstance(step, int):
                    headers = {"Retry-After": "0"} if step == 429 else {}
                    self._json(step, {"error": {"message": f"scripted {step}"}}, headers)
                    return
                k = min(body.get("n", 1), double.choices_per_request)
                choices = [
                    {"index": i, "message": {"role": "assistant", "content": f"sample {i} " + "x" * (5 * i)}, "finish_reason": "stop"}
                    for i in range(k)
                ]
                self._json(200, {"choices": choices, "usage": {"prompt_tokens": 17, "completion_tokens": 30 * k}})


        self._serve(Handler)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(openai_server, "_BACKOFF_BASE_S", 0.01)
    monkeypatch.setattr(openai_server, "_BACKOFF_CAP_S", 0.05)


async def _generate_against(double, params: SamplingParams, model: str = "double", **kwargs):
    backend = OpenAIBackend(model, base_url=double.url, **kwargs)
    await backend.start()
    try:
        return backend, await backend.generate(PROMPT, params, "x")
    finally:
        await backend.close()


async def test_retries_5xx_429_and_dropped_connections_then_succeeds():
    with FaultInjectingServer([503, "drop", 429, 502, "ok"]) as double:
        backend, completions = await _generate_against(double, SamplingParams(max_tokens=9), max_retries=4)
    assert [c.text for c in completions] == ["sample 0 "]
    assert backend.requests_sent == 5
    assert all(r["max_tokens"] == 9 for r in double.requests)


async def test_request_timeout_is_retried():
    with FaultInjectingServer([("sleep", 1.0), "ok"]) as double:
        backend, completions = await _generate_against(double, SamplingParams(), max_retries=2, request_timeout_s=0.3)
    assert len(completions) == 1 and backend.requests_sent == 2


async def test_gives_up_after_max_retries_with_the_reason():
    with FaultInjectingServer([500]) as double:
        with pytest.raises(BackendError, match=r"after 3 attempts; last: HTTP 500.*scripted 500"):
            await _generate_against(double, SamplingParams(), max_retries=2, retry_window_s=0)
        assert len(double.requests) == 3


async def test_retries_go_on_for_the_retry_window_past_max_retries():
    # A server reloading its model answers 503 for longer than a few backoffs.
    script = [503] * 12 + ["ok"]
    with FaultInjectingServer(script) as double:
        started = time.monotonic()
        _, completions = await _generate_against(double, SamplingParams(), max_retries=1, retry_window_s=60)
    assert len(completions) == 1 and len(double.requests) == 13
    assert time.monotonic() - started < 30
    with FaultInjectingServer(script) as double:
        with pytest.raises(BackendError, match=r"after 2 attempts; last: HTTP 503"):
            await _generate_against(double, SamplingParams(), max_retries=1, retry_window_s=0)


async def test_client_errors_are_not_retried():
    with FaultInjectingServer([400]) as double:
        with pytest.raises(BackendError, match="HTTP 400"):
            await _generate_against(double, SamplingParams(), max_retries=5)
        assert len(double.requests) == 1


async def test_missing_samples_requested_with_derived_seeds_and_vllm_extras():
    with FaultInjectingServer(["ok"], choices_per_request=2) as double:
        params = SamplingParams(n=5, seed=42, top_k=20, min_p=0.05, stop=["```\n"], max_tokens=64)
        backend, completions = await _generate_against(double, params)
    assert len(completions) == 5
    asked = [r["n"] for r in double.requests]
    assert asked[0] == 5 and sum(min(a, 2) for a in asked) >= 5 and len(asked) == 3
    seeds = [r["seed"] for r in double.requests]
    # The top-up requests run concurrently, so they may reach the server in either order.
    assert seeds[0] == 42 and sorted(seeds[1:]) == sorted([topup_seed(42, 1), topup_seed(42, 2)])
    for r in double.requests:
        assert r["top_k"] == 20 and r["min_p"] == 0.05 and r["stop"] == ["```\n"] and r["max_tokens"] == 64


async def test_unset_vllm_extras_are_not_sent():
    # Strict servers (transformers serve) reject unknown fields with HTTP 422.
    with FaultInjectingServer(["ok"]) as double:
        await _generate_against(double, SamplingParams())
    assert "top_k" not in double.requests[0] and "min_p" not in double.requests[0] and "seed" not in double.requests[0]


async def test_usage_total_is_split_over_choices():
    with FaultInjectingServer(["ok"], choices_per_request=3) as double:
        _, completions = await _generate_against(double, SamplingParams(n=3))
    counts = [c.completion_tokens for c in completions]
    assert sum(counts) == 90  # the server's total
    assert counts[0] < counts[1] < counts[2]  # longer texts got more of it
    assert all(c.prompt_tokens == 17 for c in completions)


async def test_api_key_is_read_from_the_named_variable_and_never_recorded(monkeypatch):
    monkeypatch.setenv("ARCSYNTH_TEST_KEY", "sk-secret-123")
    with FaultInjectingServer(["ok"]) as double:
        backend, _ = await _generate_against(double, SamplingParams(), api_key_env="ARCSYNTH_TEST_KEY")
    assert double.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in json.dumps(backend.provenance())


async def test_missing_api_key_variable_is_named():
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9", api_key_env="ARCSYNTH_UNSET_KEY_VAR")
    with pytest.raises(BackendError, match="ARCSYNTH_UNSET_KEY_VAR"):
        await backend.start()


def test_token_count_without_tokenizer_is_a_flagged_estimate():
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9")
    assert backend.token_counts_estimated
    n = backend.count_tokens([Message(role="user", content="x" * 350)])
    assert 100 <= n <= 110
    assert backend.provenance()["token_counts"] == "estimate"


# -- llama.cpp's server: a test double of its loading, slot limit and usage figures; the real
# server is exercised in test_llama_server.py --


class LlamaCppDouble(LocalServer):
    """Test double of llama.cpp's `llama-server` as it behaves on the wire.

    /health answers 503 'Loading model' until ``loading_s`` have passed (its /v1/models
    answers all along); /props gives ``total_slots``; an `n` above the slots is refused with
    its HTTP 400; usage.completion_tokens counts the first choice only; /tokenize splits on
    spaces. Any model name is served by its one model.
    """

    def __init__(self, slots: int = 2, loading_s: float = 0.0, publish_props: bool = True):
        self.requests: list[dict] = []
        self.ready_at = time.monotonic() + loading_s
        self.health_polls = 0
        double = self

        class Handler(JSONHandler):
            def do_GET(self):
                loading = time.monotonic() < double.ready_at
                if self.path == "/health":
                    double.health_polls += 1
                    if loading:
                        self._json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
                    else:
                        self._json(200, {"status": "ok"})
                elif self.path == "/props" and publish_props and not loading:
                    self._json(200, {"total_slots": slots, "model_path": "/models/m.gguf", "build_info": "b0-double"})
                elif self.path == "/v1/models":
                    self._models("/models/m.gguf")
                else:
                    self._json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

            def do_POST(self):
                body = self._body()
                if self.path == "/tokenize":
                    self._json(200, {"tokens": list(range(len(body["content"].split())))})
                    return
                double.requests.append(body)
                if time.monotonic() < double.ready_at:
                    self._json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
                    return
                n = body.get("n", 1)
                if n > slots:
                    msg = f"Field 'n': Value must be between 1 <= value <= {slots}"
                    self._json(400, {"error": {"code": 400, "message": msg, "type": "invalid_request_error"}})
                    return
                texts = [" ".join(["w"] * (3 + 2 * i + (body.get("seed") or 0) % 3)) for i in range(n)]
                choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"} for i, t in enumerate(texts)]
                usage = {"prompt_tokens": 11, "completion_tokens": len(texts[0].split())}  # the first choice's only
                self._json(200, {"choices": choices, "usage": usage, "model": "/models/m.gguf"})


        self._serve(Handler)


async def test_start_waits_while_llama_cpp_loads_its_model(capsys):
    with LlamaCppDouble(loading_s=1.5) as double:
        backend = OpenAIBackend("any-name", base_url=double.url)
        started = time.monotonic()
        await backend.start()
        waited = time.monotonic() - started
        completions = await backend.generate(PROMPT, SamplingParams(), "x")
        await backend.close()
    assert waited >= 1.0 and double.health_polls >= 2
    assert len(completions) == 1 and len(double.requests) == 1  # nothing sent before the model was loaded
    err = capsys.readouterr().err
    assert "waiting for the server" in err and "Loading model" in err


async def test_start_gives_up_on_a_model_that_never_loads_with_a_clear_message():
    with LlamaCppDouble(loading_s=60) as double:
        backend = OpenAIBackend("m", base_url=double.url, startup_timeout_s=1.0)
        with pytest.raises(BackendError, match=r"still loading its model after 1 s .*503 Loading model.*startup_timeout_s"):
            await backend.start()
        await backend.close()


async def test_samples_are_split_over_the_slots_from_props_and_counted_per_choice():
    with LlamaCppDouble(slots=2) as double:
        backend, completions = await _generate_against(double, SamplingParams(n=5, seed=7))
    assert sorted(r["n"] for r in double.requests) == [1, 2, 2]  # concurrent: any order
    assert sorted(r["seed"] for r in double.requests) == sorted([7, topup_seed(7, 1), topup_seed(7, 2)])
    assert len(completions) == 5
    # Each choice's own tokens, not the first choice's count repeated or split.
    assert [c.completion_tokens for c in completions] == [len(c.text.split()) for c in completions]
    assert backend.provenance()["llama_cpp"]["total_slots"] == 2 and backend.max_n_per_request == 2


async def test_the_n_limit_is_learned_from_the_servers_refusal():
    with LlamaCppDouble(slots=3, publish_props=False) as double:
        backend, completions = await _generate_against(double, SamplingParams(n=7, seed=1), model="/models/m.gguf")
    asked = [r["n"] for r in double.requests]
    assert asked[0] == 7 and sorted(asked[1:]) == [1, 3, 3]
    assert len(completions) == 7 and backend.max_n_per_request == 3
    assert sorted(r["seed"] for r in double.requests[1:]) == sorted([1, topup_seed(1, 1), topup_seed(1, 2)])


async def test_an_impossible_usage_total_is_not_split_over_choices():
    # Without /props the server is not known as llama.cpp; a total below one token per
    # non-empty choice cannot be the sum over choices, so each choice is estimated.
    with LlamaCppDouble(slots=4, publish_props=False) as double:
        _, completions = await _generate_against(double, SamplingParams(n=4, seed=0), model="/models/m.gguf")
    from agent.backends.chat_format import estimate_tokens

    assert [c.completion_tokens for c in completions] == [estimate_tokens(c.text) for c in completions]
    assert sum(c.completion_tokens for c in completions) > len(completions[0].text.split())  # more than the reported total


async def test_a_configured_model_name_is_an_alias_on_a_single_model_llama_cpp_server(capsys):
    with LlamaCppDouble() as double:
        backend, _ = await _generate_against(double, SamplingParams(), max_n_per_request=1)
    assert double.requests[0]["model"] == "/models/m.gguf"
    assert backend.provenance()["model"] == "double" and backend.provenance()["served_model_id"] == "/models/m.gguf"
    assert "serves one model" in capsys.readouterr().err


async def test_extra_body_fields_reach_the_server_and_cannot_override_the_runs_own():
    from agent.backends import ModelConfig

    with FaultInjectingServer(["ok"]) as double:
        await _generate_against(double, SamplingParams(max_tokens=5), extra_body={"repeat_penalty": 1.1, "grammar": "root ::= \"x\""})
    assert double.requests[0]["repeat_penalty"] == 1.1 and double.requests[0]["grammar"] == 'root ::= "x"'
    assert double.requests[0]["max_tokens"] == 5
    with pytest.raises(ValueError, match=r"extra_body may not set 'max_tokens', 'n'.*\[sampling\]"):
        ModelConfig(backend="openai", base_url="http://h:1", extra_body={"n": 2, "max_tokens": 3})
