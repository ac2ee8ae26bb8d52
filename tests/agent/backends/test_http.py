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
