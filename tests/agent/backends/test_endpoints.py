"""Several endpoints behind one openai backend: choice, task affinity, failover and taking back.

The logic is tested on its own (EndpointSet), then end to end against the pipeline's
OpenAI-compatible server double run as real processes, which the tests kill with SIGKILL
mid-run and start again on the same port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.backends import ModelConfig, make_backend
from agent.backends import openai_server
from agent.backends.base import BackendError, Message, SamplingParams
from agent.backends.endpoints import Endpoint, EndpointSet
from agent.backends.openai_server import OpenAIBackend, task_key
from agent.config import ConfigError, parse_config
from agent.benchmarks.server_double import MODEL_NAME
from agent.trace import CompletionEvent, TraceEncoder


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

ROOT = Path(__file__).resolve().parents[3]
PROMPT = [Message(role="user", content="Write transform(grid).")]
# Training tasks the double has no solution for: every program it writes is wrong, so no task stops early.
TASKS = ["007bbfb7", "00d62c1b", "017c7c7b", "025d127b"]


# -- the choice on its own ----------------------------------------------------------------


def _set(n: int = 2, **kwargs) -> EndpointSet:
    return EndpointSet([Endpoint(f"http://h{i}:8000/v1", f"http://h{i}:8000/v1") for i in range(n)], **kwargs)


def test_a_task_keeps_to_one_endpoint_and_tasks_spread_over_all():
    eps = _set(3)
    firsts = {}
    for i in range(60):
        key = f"task{i}"
        chosen = {eps.choose(key).label for _ in range(5)}
        assert len(chosen) == 1  # the same task: the same server every time
        firsts[key] = chosen.pop()
    counts = {label: list(firsts.values()).count(label) for label in {e.label for e in eps}}
    assert len(counts) == 3 and min(counts.values()) >= 10, counts


def test_rendezvous_moves_only_the_tasks_of_a_lost_endpoint():
    three, two = _set(3), _set(2)  # h2 gone
    for i in range(100):
        key = f"t{i}"
        before = three.preference(key)[0].label
        if not before.startswith("http://h2"):
            assert two.preference(key)[0].label == before


def test_a_much_busier_preferred_endpoint_gives_way_to_the_least_loaded():
    eps = _set(2, slack=2)
    pref, other = eps.preference("k")
    pref.in_flight, other.in_flight = 2, 0
    assert eps.choose("k") is pref  # busier by the slack: still worth it for the cached prefix
    pref.in_flight = 3
    assert eps.choose("k") is other
    assert eps.choose(None) is other  # no task: least loaded


def test_a_dead_endpoint_is_left_out_until_it_answers_and_failing_ones_after_a_streak():
    eps = _set(2, down_after=3)
    a, b = eps.preference("k")
    eps.failed(a, "ConnectError: refused", dead=True)
    assert not a.up and eps.choose("k") is b
    eps.succeeded(a)  # it answered (a request sent while all were down, or the probe)
    assert a.up and eps.choose("k") is a
    for _ in range(2):
        eps.failed(a, "HTTP 502", dead=False)
    assert a.up  # two 5xx in a row: a hiccup
    eps.succeeded(a)
    for _ in range(3):
        eps.failed(a, "HTTP 502", dead=False)
    assert not a.up and "HTTP 502" in eps.describe()


def test_a_retry_avoids_the_endpoint_that_failed_it_and_all_down_still_tries():
    eps = _set(2)
    a, b = eps.preference("k")
    assert eps.choose("k", avoid=[a]) is b
    assert eps.choose("k", avoid=[a, b]) is a  # every one failed it once: preference again
    eps.failed(a, "refused", dead=True)
    eps.failed(b, "refused", dead=True)
    assert eps.choose("k") is a  # all down: the attempt probes the preferred one


def test_one_endpoint_is_never_taken_out():
    eps = _set(1)
    (a,) = eps
    for _ in range(5):
        eps.failed(a, "refused", dead=True)
    assert a.up and eps.choose("k") is a


async def test_a_probe_takes_a_down_endpoint_back():
    answers = iter([False, True])
    probed: list[str] = []

    async def probe(ep: Endpoint) -> bool:
        probed.append(ep.label)
        return next(answers)

    eps = _set(2, probe=probe, probe_interval_s=0.05)
    a, b = eps.preference("k")
    eps.failed(a, "refused", dead=True)
    deadline = time.monotonic() + 5
    while not a.up and time.monotonic() < deadline:
        eps.choose("k")  # probes run while requests are chosen
        await asyncio.sleep(0.02)
    await eps.close()
    assert a.up and probed == [a.label, a.label]


def test_the_task_key_is_the_first_part_of_the_request_id():
    assert task_key("007bbfb7/r1/q3") == "007bbfb7" and task_key("") is None


# -- configuration ------------------------------------------------------------------------


def _model(base_url) -> ModelConfig:
    return parse_config({"model": {"backend": "openai", "model": "m", "base_url": base_url}}).model


def test_a_list_of_urls_is_validated_element_by_element():
    assert _model(["127.0.0.1:8000", "http://10.0.0.2:8000/v1"]).base_url == ["http://127.0.0.1:8000", "http://10.0.0.2:8000/v1"]
    assert _model("127.0.0.1:8000").base_url == "http://127.0.0.1:8000"  # one URL: a string, as before
    cases = {
        "[]": "model.base_url: the list of endpoints is empty",
        '["http://a:1", "notaurl"]': "model.base_url: element 1 ('notaurl') must be an http(s) URL",
        '["http://a:1/v1", "a:1"]': "model.base_url: element 1 ('a:1') repeats element 0",
        '["http://a:1", 5]': "model.base_url: element 1 (5) is not a URL string",
    }
    for value, message in cases.items():
        with pytest.raises(ConfigError) as e:
            parse_config({"model": {"backend": "openai", "model": "m"}}, [f"model.base_url={value}"])
        assert message in str(e.value), str(e.value)


def test_make_backend_passes_every_endpoint():
    backend = make_backend(_model(["http://a:1", "http://user:secret@b:2/v1"]))
    assert backend.base_urls == ["http://a:1/v1", "http://user:secret@b:2/v1"]
    assert [e.label for e in backend.endpoints] == ["http://a:1/v1", "http://b:2/v1"]
    assert "secret" not in json.dumps(backend.provenance())


def test_the_trace_records_the_endpoint_only_when_there_is_a_choice():
    enc = TraceEncoder()
    common = dict(task_id="t", index=0, text="x", prompt_tokens=1, completion_tokens=1, finish_reason="stop", latency_s=0.1)
    (one,) = enc.encode(CompletionEvent(request_id="t/r0/q0", **common))
    (several,) = enc.encode(CompletionEvent(request_id="t/r0/q1", endpoint="http://b:2/v1", **common))
    assert "endpoint" not in json.loads(one) and json.loads(several)["endpoint"] == "http://b:2/v1"


# -- against real server processes (the pipeline's server double) ----------------------------


class DoubleServer:
    """The pipeline's server double in its own process on a fixed port, killable and restartable."""

    def __init__(self, latency_ms: float, port: int | None = None):
        self.latency_ms = latency_ms
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "DoubleServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.benchmarks.server_double", "--tasks", ",".join(TASKS), "--port", str(self.port),
             "--latency-ms", str(self.latency_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening "), f"the server double did not start: {line!r}"
        return self

    def kill(self) -> None:
        """SIGKILL: connections in flight are dropped, new ones refused."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.kill()
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def doubles():
    started: list[DoubleServer] = []

    def make(latency_ms: float) -> DoubleServer:
        server = DoubleServer(latency_ms).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(openai_server, "_BACKOFF_BASE_S", 0.05)
    monkeypatch.setattr(openai_server, "_BACKOFF_CAP_S", 0.2)


async def _ask(backend: OpenAIBackend, task: str, q: int) -> tuple[float, str]:
    (c,) = await backend.generate(PROMPT, SamplingParams(n=1, max_tokens=64, seed=q), f"{task}/r0/q{q}")
    return time.monotonic(), c.endpoint


async def test_a_killed_server_is_taken_out_its_requests_answered_by_the_other_and_taken_back(doubles, fast_backoff, capsys):
    a_srv, b_srv = doubles(300), doubles(300)
    backend = OpenAIBackend(MODEL_NAME, base_url=[a_srv.url, b_srv.url], concurrency=8, retry_window_s=30)
    await backend.start()
    try:
        a, b = backend.endpoints
        keys = [f"task{i:02d}" for i in range(16)]
        prefers = {k: backend.endpoints.preference(k)[0] for k in keys}
        assert {a, b} == set(prefers.values())

        # One request at a time: every task's request goes to the server it prefers.
        for k in keys[:6]:
            _, served = await _ask(backend, k, 0)
            assert served == prefers[k].label

        # Many requests of one task at once: the preferred server takes them until it is
        # much busier than the other, which then takes the rest.
        one = await asyncio.gather(*(_ask(backend, "task00", q) for q in range(1, 13)))
        on_pref = sum(served == prefers["task00"].label for _, served in one)
        # At least half stay on the preferred server (an even split under load is possible), never all.
        assert 6 <= on_pref < 12, one

        # A steady stream over all tasks; kill A while it has requests in flight.
        stream = [asyncio.create_task(_ask(backend, k, q)) for q in range(20, 24) for k in keys]
        deadline = time.monotonic() + 20
        while a.in_flight == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert a.in_flight > 0
        answered_by_a_before = a.answered
        a_srv.kill()
        killed_at = time.monotonic()
        done = await asyncio.gather(*stream)  # every request answered: none fails
        assert len(done) == 4 * len(keys)
        assert not a.up and a.answered == answered_by_a_before
        late = [(t, served) for t, served in done if t > killed_at]
        assert late and all(served == b.label for _, served in late)
        # The tasks that prefer A were served by B meanwhile.
        assert any(prefers[k] is a for k in keys)
        assert "endpoint " + a.label + " is down" in capsys.readouterr().err

        # Back on its port: the probe finds it and its tasks return to it.
        a_srv.start()
        deadline = time.monotonic() + 30
        while not a.up and time.monotonic() < deadline:
            await _ask(backend, "task00", 99)
            await asyncio.sleep(0.1)
        assert a.up, a.down_reason
        back = [k for k in keys if prefers[k] is a][:4]
        for k in back:
            _, served = await _ask(backend, k, 100)
            assert served == a.label
        assert "endpoint " + a.label + " is back" in capsys.readouterr().err
        stats = {s["url"]: s for s in backend.provenance()["endpoints"]}
        assert stats[a.label]["times_down"] == 1 and stats[b.label]["answered"] > 0
    finally:
        await backend.close()


async def test_all_endpoints_down_fails_with_a_message_naming_each(doubles, fast_backoff):
    a_srv, b_srv = doubles(0), doubles(0)
    backend = OpenAIBackend(MODEL_NAME, base_url=[a_srv.url, b_srv.url], max_retries=3, retry_window_s=1.0)
    await backend.start()
    try:
        a_srv.kill()
        b_srv.kill()
        started = time.monotonic()
        with pytest.raises(BackendError) as e:
            await backend.generate(PROMPT, SamplingParams(max_tokens=8), "t/r0/q0")
        assert time.monotonic() - started >= 1.0  # waited out the retry window
        message = str(e.value)
        assert "on every endpoint" in message and a_srv.url in message and b_srv.url in message and "down" in message
    finally:
        await backend.close()


async def test_start_goes_on_without_an_unreachable_endpoint_which_joins_when_it_answers(doubles, fast_backoff, capsys):
    live = doubles(0)
    late = DoubleServer(0)  # not started yet
    backend = OpenAIBackend(MODEL_NAME, base_url=[late.url, live.url])
    await backend.start()
    try:
        first, second = backend.endpoints
        assert not first.up and second.up
        assert f"{late.url} is unreachable" in capsys.readouterr().err
        for q in range(3):
            _, served = await _ask(backend, f"k{q}", q)
            assert served == live.url
        late.start()
        deadline = time.monotonic() + 20
        while not first.up and time.monotonic() < deadline:
            await _ask(backend, "k", 0)
            await asyncio.sleep(0.1)
        assert first.up and first.served_model_id == MODEL_NAME
    finally:
        await backend.close()
        late.stop()


async def test_start_fails_naming_every_endpoint_when_none_answers():
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    with pytest.raises(BackendError) as e:
        await OpenAIBackend("m", base_url=urls).start()
    assert "no endpoint of base_url answers" in str(e.value) and all(u in str(e.value) for u in urls)


def test_a_solve_run_survives_a_server_killed_mid_run_and_takes_it_back(doubles, tmp_path):
    a_srv, b_srv = doubles(400), doubles(400)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "arcsynth", "solve", str(ROOT / "runs" / "server.toml"),
        f'model.base_url=["{a_srv.url}", "{b_srv.url}"]', f"model.model={MODEL_NAME}", "model.concurrency=8",
        "data.dataset=arc1:train", f"data.tasks={json.dumps(TASKS)}", "concurrency=4", "sampling.samples_per_prompt=2",
        "sampling.max_tokens=512", "budget.rounds=12", "budget.first_prompts=2", "budget.refine_prompts=2",
        "sandbox.workers=1", "--out", str(run),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    trace = run / "trace.jsonl"

    def completions() -> list[dict]:
        if not trace.exists():
            return []
        lines = trace.read_text().splitlines()
        return [e for e in map(_json_or_none, lines) if e and e.get("event") == "completion"]

    def wait_for(condition, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the run ended before {what}:\n{out[-2000:]}\n{err[-3000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.1)

    try:
        wait_for(lambda: sum(e.get("endpoint") == a_srv.url for e in completions()) >= 4, "A to answer")
        a_srv.kill()
        killed_at = time.time()
        # Answers already on their way when A died may still land in the first half second.
        wait_for(lambda: sum(e["t"] > killed_at + 0.5 for e in completions()) >= 24, "the run to go on without A")
        a_srv.start()
        restarted_at = time.time()
        wait_for(lambda: any(e.get("endpoint") == a_srv.url and e["t"] > restarted_at for e in completions()), "A to be taken back")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert "Traceback" not in err
    assert f"endpoint {a_srv.url} is down" in err and f"endpoint {a_srv.url} is back" in err
    events = completions()
    # Between the kill (and a moment for answers already on their way) and the restart, B answered everything.
    outage = [e for e in events if killed_at + 0.5 < e["t"] < restarted_at]
    assert len(outage) >= 20 and all(e["endpoint"] == b_srv.url for e in outage)
    for tid in TASKS:
        result = json.loads((run / "results" / f"{tid}.json").read_text())
        assert result["status"] != "error", result
    provenance = json.loads((run / "provenance.json").read_text())
    assert json.dumps(provenance).count(a_srv.url) >= 1 and b_srv.url in json.dumps(provenance)


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None  # the line being written
