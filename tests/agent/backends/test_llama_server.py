"""OpenAIBackend and `arcsynth solve` against a real llama.cpp `llama-server`.

The server is built from llama.cpp's source by scripts/llama_server.sh (scripts/setup.sh
test runs it) and serves the embedded SmolLM2 GGUF with two slots, so a request for four
samples is more than it takes at once. Without the binary these tests are skipped, saying
how to build it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.backends.base import BackendError, Message, SamplingParams
from agent.backends.embedded import SMOLLM2, embedded_gguf_path
from agent.backends.openai_server import OpenAIBackend

ROOT = Path(__file__).resolve().parents[3]
SLOTS = 2
PROMPT = [Message(role="user", content="Write a Python function that adds two numbers.")]

pytestmark = pytest.mark.slow


def llama_server_binary() -> str:
    """$ARCSYNTH_LLAMA_SERVER, else the build of scripts/llama_server.sh; skips the test when neither exists."""
    given = os.environ.get("ARCSYNTH_LLAMA_SERVER")
    if given:
        return given
    found = subprocess.run(["bash", str(ROOT / "scripts" / "llama_server.sh"), "--installed"], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"{found.stderr.strip()}: build it with `bash scripts/llama_server.sh` (scripts/setup.sh test does)")
    return found.stdout.strip()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One `llama-server` process serving SmolLM2 on 127.0.0.1."""

    def __init__(self, binary: str, log_path: Path, port: int | None = None):
        self.binary, self.log_path = binary, log_path
        self.port = port or _free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "LlamaServer":
        cmd = [
            self.binary, "-m", str(embedded_gguf_path(SMOLLM2)), "--host", "127.0.0.1", "--port", str(self.port),
            "-np", str(SLOTS), "-c", str(4096 * SLOTS), "-t", "2", "--no-webui",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            deadline = time.monotonic() + 120
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"llama-server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{self.root}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"llama-server did not become healthy in 120 s:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tokens(self, text: str) -> int:
        resp = httpx.post(f"{self.root}/tokenize", json={"content": text, "add_special": False}, timeout=30)
        return len(resp.json()["tokens"])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    server = LlamaServer(llama_server_binary(), tmp_path_factory.mktemp("llama-server") / "server.log").start()
    yield server
    server.stop()


async def _started(server: LlamaServer, model: str = "smollm2", **kwargs) -> OpenAIBackend:
    backend = OpenAIBackend(model, base_url=server.url, **kwargs)
    await backend.start()
    return backend


async def test_more_samples_than_slots_are_split_and_each_choice_is_counted(llama_server):
    # The server refuses n above its slots (HTTP 400); its usage counts the first choice only.
    raw = httpx.post(f"{llama_server.url}/chat/completions", json={"messages": [m.as_dict() for m in PROMPT], "n": SLOTS + 1, "max_tokens": 4}, timeout=60)
    assert raw.status_code == 400 and "'n'" in raw.text

    backend = await _started(llama_server)
    try:
        assert backend.llama_cpp["total_slots"] == SLOTS and backend.max_n_per_request == SLOTS
        completions = await backend.generate(PROMPT, SamplingParams(n=5, seed=3, max_tokens=48, temperature=1.0), "x")
    finally:
        await backend.close()
    assert len(completions) == 5 and len({c.text for c in completions}) > 1
    for c in completions:
        expected = 48 if c.finish_reason == "length" else llama_server.tokens(c.text)
        assert c.completion_tokens == expected, c
    assert sum(c.completion_tokens for c in completions) > completions[0].completion_tokens * 2


async def test_the_slot_limit_is_learned_from_the_real_refusal(llama_server):
    backend = await _started(llama_server)
    backend.max_n_per_request = None  # as for a server whose /props does not say
    try:
        completions = await backend.generate(PROMPT, SamplingParams(n=3, seed=1, max_tokens=8), "x")
    finally:
        await backend.close()
    assert len(completions) == 3 and backend.max_n_per_request == SLOTS


async def test_any_model_name_is_an_alias_of_its_one_model(llama_server):
    backend = await _started(llama_server, model="Qwen/Qwen2.5-Coder-7B-Instruct")
    try:
        completions = await backend.generate(PROMPT, SamplingParams(max_tokens=4), "x")
    finally:
        await backend.close()
    assert completions and backend.provenance()["model"] == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert backend.provenance()["served_model_id"] != "Qwen/Qwen2.5-Coder-7B-Instruct"


async def test_server_specific_fields_pass_through(llama_server):
    program = "def transform(grid):\n    return grid\n"
    grammar = 'root ::= "' + program.replace("\n", "\\n") + '"'
    backend = await _started(llama_server, extra_body={"grammar": grammar, "repeat_penalty": 1.1})
    try:
        completions = await backend.generate(PROMPT, SamplingParams(n=3, seed=0, max_tokens=64), "x")
    finally:
        await backend.close()
    assert [c.text for c in completions] == [program] * 3


async def test_a_request_the_server_refuses_is_a_clear_error_not_retried(llama_server):
    backend = await _started(llama_server, extra_body={"grammar": "root ::= ("})
    try:
        with pytest.raises(BackendError, match=r"refused the request .*HTTP 400"):
            await backend.generate(PROMPT, SamplingParams(max_tokens=4), "x")
        assert backend.requests_sent == 1
    finally:
        await backend.close()


async def test_a_request_survives_a_server_restart_within_the_retry_window(tmp_path):
    server = LlamaServer(llama_server_binary(), tmp_path / "server.log").start()
    backend = await _started(server, retry_window_s=120)
    try:
        server.stop()  # a restart: the request meets refused connections, then a loading model
        import asyncio

        pending = asyncio.create_task(backend.generate(PROMPT, SamplingParams(max_tokens=4), "x"))
        await asyncio.sleep(2.0)
        assert not pending.done()
        server.start(wait=False)
        completions = await asyncio.wait_for(pending, timeout=120)
        assert len(completions) == 1 and backend.requests_sent >= 2
    finally:
        await backend.close()
        server.stop()


def _solve(tmp_path: Path, server: LlamaServer, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # a keyless local server
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable, "-m", "arcsynth", "solve", str(ROOT / "runs" / "server.toml"),
        f"model.base_url={server.url}", "model.model=smollm2", "data.dataset=arc1:eval", 'data.tasks=["66e6c45b"]',
        "sampling.samples_per_prompt=4", "sampling.max_tokens=96", "budget.rounds=1", "budget.first_prompts=1",
        "prompt.max_prompt_tokens=3500", *overrides, "--out", str(tmp_path / "run"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_solve_with_the_server_example_config(llama_server, tmp_path):
    r = _solve(tmp_path, llama_server)
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads((tmp_path / "run" / "results" / "66e6c45b.json").read_text())
    assert results["status"] != "error", results
    events = [json.loads(line) for line in (tmp_path / "run" / "trace.jsonl").read_text().splitlines()]
    completions = [e for e in events if e["event"] == "completion"]
    assert len(completions) == 4 and all(e["completion_tokens"] > 0 for e in completions)
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert "total_slots" in json.dumps(provenance)


def test_a_run_in_which_every_task_failed_exits_non_zero(llama_server, tmp_path):
    r = _solve(tmp_path, llama_server, 'model.extra_body={grammar = "root ::= ("}')
    assert r.returncode == 1, r.stdout + r.stderr
    assert "every task ended in an error" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


# -- two servers, one killed ---------------------------------------------------------------


def _busy(server: LlamaServer) -> bool:
    """Whether the server is generating for a request now (its /slots)."""
    try:
        return any(slot.get("is_processing") for slot in httpx.get(f"{server.root}/slots", timeout=2).json())
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


@pytest.mark.timeout(900)
def test_a_solve_over_two_servers_finishes_when_one_is_killed_mid_run(tmp_path):
    binary = llama_server_binary()
    a = LlamaServer(binary, tmp_path / "a.log").start()
    b = LlamaServer(binary, tmp_path / "b.log").start()
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # Two small ARC-AGI-1 evaluation tasks, three requests each at once: more than one
    # server takes for a task (affinity slack 2), so both servers are sent requests.
    tasks = ["66e6c45b", "0c786b71"]
    cmd = [
        sys.executable, "-m", "arcsynth", "solve", str(ROOT / "runs" / "server.toml"),
        f'model.base_url=["{a.url}", "{b.url}"]', "model.model=smollm2", "model.concurrency=8", "data.dataset=arc1:eval",
        f"data.tasks={json.dumps(tasks)}", "sampling.samples_per_prompt=2", "sampling.max_tokens=32", "budget.rounds=1",
        "budget.first_prompts=3", "prompt.max_prompt_tokens=3500", "--out", str(run),
    ]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        try:
            # Killed while it generates: its requests in flight must be answered by the other.
            deadline = time.monotonic() + 300
            while not _busy(a):
                assert proc.poll() is None and time.monotonic() < deadline, "the run never reached server A"
                time.sleep(0.05)
            a.proc.kill()
            a.proc.wait()
            killed_at = time.time()
            out, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        a.stop()
        b.stop()
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert "Traceback" not in err and f"endpoint {a.url} is down" in err
    events = [json.loads(line) for line in (run / "trace.jsonl").read_text().splitlines()]
    completions = [e for e in events if e["event"] == "completion"]
    prompts = [e for e in events if e["event"] == "prompt"]
    # Every request was answered in full, those that were on A when it died included.
    for p in prompts:
        assert sum(c["request_id"] == p["request_id"] for c in completions) == p["sampling"]["n"], p["request_id"]
    after = [c for c in completions if c["t"] > killed_at + 0.5]
    assert after and all(c["endpoint"] == b.url for c in after)
    for tid in tasks:
        assert json.loads((run / "results" / f"{tid}.json").read_text())["status"] != "error"


async def test_a_restarted_server_is_taken_back_once_its_model_is_loaded(tmp_path):
    import asyncio

    binary = llama_server_binary()
    a = LlamaServer(binary, tmp_path / "a.log").start()
    b = LlamaServer(binary, tmp_path / "b.log").start()
    backend = OpenAIBackend("smollm2", base_url=[a.url, b.url], retry_window_s=60)
    try:
        await backend.start()
        ep_a, ep_b = backend.endpoints
        assert ep_a.llama_cpp["total_slots"] == SLOTS and ep_a.served_model_id
        keys = [k for k in (f"task{i}" for i in range(40)) if backend.endpoints.preference(k)[0] is ep_a][:3]
        params = SamplingParams(n=1, max_tokens=4, seed=1)
        a.stop()
        for k in keys:  # A's tasks: refused connections, answered by B
            (c,) = await backend.generate(PROMPT, params, f"{k}/r0/q0")
            assert c.endpoint == b.url
        assert not ep_a.up
        a.start(wait=False)  # answers 503 'Loading model' for a while: not back until it serves
        deadline = time.monotonic() + 120
        served = None
        while time.monotonic() < deadline:
            (c,) = await backend.generate(PROMPT, params, f"{keys[0]}/r1/q0")
            if c.endpoint == a.url:
                served = c
                break
            await asyncio.sleep(0.2)
        assert served is not None and ep_a.up, ep_a.down_reason
        assert httpx.get(f"{a.root}/health", timeout=5).status_code == 200
    finally:
        await backend.close()
        a.stop()
        b.stop()


async def test_a_transformers_server_and_a_llama_server_share_the_requests_and_one_takes_over(transformers_server, tmp_path):
    # Two different servers of the same model: each is asked under the name it serves it by.
    url, folder = transformers_server
    llama = LlamaServer(llama_server_binary(), tmp_path / "llama.log").start()
    backend = OpenAIBackend("smollm2", base_url=[url, llama.url], retry_window_s=60)
    try:
        await backend.start()
        hf, cpp = backend.endpoints
        assert hf.served_model_id == folder and cpp.llama_cpp is not None and cpp.served_model_id != folder
        params = SamplingParams(n=2, max_tokens=4, seed=5)
        by_server: dict[str, list[str]] = {}
        keys = [f"task{i}" for i in range(12)]
        for k in keys:
            completions = await backend.generate(PROMPT, params, f"{k}/r0/q0")
            assert len(completions) == 2
            for c in completions:
                by_server.setdefault(c.endpoint, []).append(k)
        assert set(by_server) == {url, llama.url}, by_server
        llama.stop()
        for k in by_server[llama.url][:2]:  # tasks that were on llama.cpp's server
            completions = await backend.generate(PROMPT, params, f"{k}/r1/q0")
            assert [c.endpoint for c in completions] == [url, url]
        assert not cpp.up
    finally:
        await backend.close()
        llama.stop()
