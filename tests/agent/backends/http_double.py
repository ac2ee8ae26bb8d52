"""What the tests' OpenAI-compatible server doubles share: JSON replies, and serving on a free local port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that answers in JSON and logs nothing."""

    def log_message(self, *args):
        pass

    def _body(self):
        """The request's JSON body."""
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def _models(self, *ids: str) -> None:
        """Answer GET /models listing ``ids``."""
        self._json(200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class LocalServer:
    """Serves a handler class on 127.0.0.1 in a thread while used as a context manager; ``url`` is its API root."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


async def solve_over_http(task, cfg, model: str, base_url: str):
    """Solve ``task`` with ``cfg`` through the real OpenAI backend at ``base_url`` and a one-worker
    sandbox; the outcome and the events it recorded."""
    from agent.backends.openai_server import OpenAIBackend
    from agent.loop import SolveContext, solve_task
    from sandbox import Sandbox, SandboxConfig
    from scripted_backend import MemoryRecorder

    backend = OpenAIBackend(model, base_url=base_url, endpoint="chat")
    await backend.start()
    rec = MemoryRecorder()
    try:
        async with Sandbox(SandboxConfig(workers=1)) as sb:
            outcome = await solve_task(task, SolveContext(config=cfg, backend=backend, sandbox=sb, recorder=rec))
    finally:
        await backend.close()
    return outcome, rec
