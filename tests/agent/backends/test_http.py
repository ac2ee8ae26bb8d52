"""The backend's HTTP client against real local servers: answers read whole, and each way a
request can fail told apart (a dead server from a slow one)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared server doubles

from http_double import JSONHandler, LocalServer  # noqa: E402

from agent.backends import http  # noqa: E402


class Echo(JSONHandler):
    """Answers a POST with its JSON body and the Authorization header it got; GET /slow waits 2 s."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._json(200, {"got": body.decode(), "auth": self.headers.get("Authorization")}, {"Retry-After": "3"})

    def do_GET(self):
        if self.path.endswith("/slow"):
            time.sleep(2)
        self._json(503, {"error": {"message": "Loading model"}})


class Server(LocalServer):
    def __init__(self, handler):
        self._serve(handler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.asyncio
async def test_answers_are_read_whole_with_status_headers_and_json():
    with Server(Echo) as srv:
        async with http.Client(headers={"Authorization": "Bearer k"}, timeout_s=10) as client:
            resp = await client.post(f"{srv.url}/chat/completions", json={"n": 2, "text": "é"})
            assert resp.status_code == 200 and resp.headers["retry-after"] == "3"
            assert resp.json() == {"got": '{"n": 2, "text": "\\u00e9"}', "auth": "Bearer k"}
            error = await client.get(f"{srv.url}/models")
            assert error.status_code == 503 and "Loading model" in error.text


@pytest.mark.asyncio
async def test_a_refused_connection_is_a_dead_server():
    async with http.Client(headers={}, timeout_s=10) as client:
        with pytest.raises(http.HTTPError) as info:
            await client.get(f"http://127.0.0.1:{_free_port()}/v1/models")
    assert info.value.dead and info.value.kind == "ConnectError" and str(info.value).startswith("ConnectError: ")


@pytest.mark.asyncio
async def test_a_slow_answer_is_a_timeout_not_a_dead_server():
    with Server(Echo) as srv:
        async with http.Client(headers={}, timeout_s=10) as client:
            with pytest.raises(http.HTTPError) as info:
                await client.get(f"{srv.url}/slow", timeout=0.5)
    assert not info.value.dead and info.value.kind == "ReadTimeout" and "0.5 s" in str(info.value)


@pytest.mark.asyncio
async def test_a_connection_dropped_mid_answer_is_a_dead_server():
    # A server that reads the request and closes the connection without answering (a crash).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def drop():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=drop, daemon=True).start()
    try:
        async with http.Client(headers={}, timeout_s=10) as client:
            with pytest.raises(http.HTTPError) as info:
                await client.post(f"http://127.0.0.1:{port}/v1/completions", json={})
        assert info.value.dead and info.value.kind in ("RemoteProtocolError", "ReadError")
    finally:
        listener.close()


@pytest.mark.asyncio
async def test_a_malformed_url_is_an_error_of_the_request_not_of_the_server():
    async with http.Client(headers={}, timeout_s=10) as client:
        with pytest.raises(http.HTTPError) as info:
            await client.get("http://[::1/v1/models")
    assert not info.value.dead


class Recorder(JSONHandler):
    """Answers any request with the request line's target and the credentials it carried."""

    def _answer(self):
        self._json(200, {"target": self.path, "auth": self.headers.get("Authorization"),
                         "proxy_auth": self.headers.get("Proxy-Authorization")})

    do_GET = do_POST = _answer


def _environment(monkeypatch, tmp_path, **values: str) -> None:
    """Only ``values`` among the proxy variables, and a ~/.netrc of our own (NETRC)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))


@pytest.mark.asyncio
async def test_the_proxy_variables_apply_and_no_proxy_bypasses_them(monkeypatch, tmp_path):
    with Server(Recorder) as proxy, Server(Recorder) as direct:
        proxy_root = proxy.url.removesuffix("/v1")
        _environment(monkeypatch, tmp_path, HTTP_PROXY=proxy_root)
        async with http.Client(headers={}, timeout_s=10) as client:
            # A host that does not resolve is reached through the proxy, which sees the absolute URL.
            via = (await client.post("http://arc-model.invalid/v1/chat/completions", json={})).json()
            assert via["target"] == "http://arc-model.invalid/v1/chat/completions"
        _environment(monkeypatch, tmp_path, HTTP_PROXY=proxy_root, NO_PROXY="127.0.0.1")
        async with http.Client(headers={}, timeout_s=10) as client:
            assert (await client.get(f"{direct.url}/models")).json()["target"] == "/v1/models"


@pytest.mark.asyncio
async def test_netrc_credentials_apply_unless_the_client_sends_its_own(monkeypatch, tmp_path):
    with Server(Recorder) as srv:
        _environment(monkeypatch, tmp_path)
        (tmp_path / "netrc").write_text("machine 127.0.0.1 login arc password s3cret\n")
        async with http.Client(headers={}, timeout_s=10) as client:
            assert (await client.get(f"{srv.url}/models")).json()["auth"] == "Basic YXJjOnMzY3JldA=="  # arc:s3cret
        async with http.Client(headers={"Authorization": "Bearer k"}, timeout_s=10) as client:
            assert (await client.get(f"{srv.url}/models")).json()["auth"] == "Bearer k"


@pytest.mark.asyncio
async def test_the_environment_is_read_once_per_server_not_per_request(monkeypatch, tmp_path):
    _environment(monkeypatch, tmp_path)
    reads = []
    real = http._read_environment
    monkeypatch.setattr(http, "_read_environment", lambda url, netrc_auth: reads.append(str(url)) or real(url, netrc_auth))
    with Server(Recorder) as a, Server(Recorder) as b:
        async with http.Client(headers={}, timeout_s=10) as client:
            for _ in range(10):
                await client.get(f"{a.url}/models")
                await client.post(f"{b.url}/chat/completions", json={})
    assert sorted(reads) == sorted([f"{a.url}/models", f"{b.url}/chat/completions"])
