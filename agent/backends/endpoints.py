"""The servers of one OpenAI-compatible backend: ``model.base_url`` as a list of endpoints.

Several ``vllm serve`` / SGLang / llama.cpp servers (one per GPU or node) serve the same
model. Each request goes to one endpoint, chosen by:

- health: an endpoint that refused or dropped a connection, or failed
  :data:`DOWN_AFTER_FAILURES` requests in a row, is *down* and gets no requests; a probe
  (``GET /health``, then ``GET /models``) every :data:`PROBE_INTERVAL_S` seconds takes it
  back once it answers again. When every endpoint is down, requests still go to them (each
  attempt is then a probe of its own), so a run waits out a restart as one server would.
- affinity: the requests of one task (the key: the task id) prefer one endpoint, chosen by
  rendezvous hashing of the key and the endpoint URLs, so the server keeps the task's prompt
  prefix in its cache; adding or losing an endpoint moves only the tasks that preferred it.
- load: when the preferred endpoint has more than ``slack`` requests in flight beyond the
  least loaded one, the least loaded one takes the request instead.

A request that failed on an endpoint avoids that endpoint on its retries while another is up.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from typing import Awaitable, Callable, Iterable, Optional

# A server that fails this many requests in a row (5xx, timeouts) is taken out; a refused
# or dropped connection takes it out at once.
DOWN_AFTER_FAILURES = 3
# How often a down endpoint is probed (only while requests are being sent).
PROBE_INTERVAL_S = 2.0


class Endpoint:
    """One server: its API root, what it serves, its load and its health."""

    def __init__(self, url: str, label: str):
        self.url = url  # API root, e.g. http://10.0.0.2:8000/v1
        self.label = label  # the URL without credentials, for messages, trace and provenance
        self.in_flight = 0
        self.up = True
        self.down_reason = ""
        self.failures = 0  # consecutive failed requests
        self.answered = 0  # requests answered with 200
        self.times_down = 0
        self.next_probe = 0.0
        self.probing = False
        # Learned at start or when taken back: the model id this server serves the model under,
        # its /models entry, and what llama.cpp's server says about itself (None for others).
        self.served_model_id: Optional[str] = None
        self.model_entry: dict = {}
        self.llama_cpp: Optional[dict] = None

    def __repr__(self) -> str:
        return f"Endpoint({self.label}, {'up' if self.up else 'down'}, in_flight={self.in_flight})"


def _weight(key: str, url: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\0{url}".encode(), digest_size=8).digest(), "big")


class EndpointSet:
    """Choice, health and probing over a backend's endpoints (see the module docstring).

    ``probe(endpoint)`` returns whether a down endpoint serves again; it runs as a task
    of the event loop that asks for an endpoint, at most one per endpoint at a time.
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        slack: int = 2,
        probe: Optional[Callable[[Endpoint], Awaitable[bool]]] = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
        down_after: int = DOWN_AFTER_FAILURES,
    ):
        if not endpoints:
            raise ValueError("an endpoint set needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.slack = slack
        self.probe = probe
        self.probe_interval_s = probe_interval_s
        self.down_after = down_after
        self._probes: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self.endpoints)

    def __iter__(self):
        return iter(self.endpoints)

    @property
    def several(self) -> bool:
        return len(self.endpoints) > 1

    def up(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.up]

    def preference(self, key: str) -> list[Endpoint]:
        """The endpoints in ``key``'s order of preference (rendezvous hashing)."""
        return sorted(self.endpoints, key=lambda e: _weight(key, e.url), reverse=True)

    def choose(self, key: Optional[str] = None, avoid: Iterable[Endpoint] = ()) -> Endpoint:
        """The endpoint for the next attempt of a request (see the module docstring)."""
        if not self.several:
            return self.endpoints[0]
        self._probe_due()
        avoid = set(avoid)
        up = self.up()
        pool = [e for e in up if e not in avoid] or up
        if not pool:  # every endpoint is down: the attempt itself probes one
            pool = [e for e in self.endpoints if e not in avoid] or self.endpoints
        order = self.preference(key) if key else self.endpoints
        ranked = [e for e in order if e in pool]
        preferred = ranked[0]
        least = min(ranked, key=lambda e: e.in_flight)  # the first of equals: the next preferred
        if not key or preferred.in_flight - least.in_flight > self.slack:
            return least
        return preferred

    # -- health ----------------------------------------------------------------------------

    def succeeded(self, ep: Endpoint) -> None:
        ep.failures = 0
        if not ep.up:
            self.mark_up(ep)

    def failed(self, ep: Endpoint, reason: str, *, dead: bool) -> None:
        """A request failed on ``ep``: ``dead`` (connection refused or dropped) takes it out at once."""
        ep.failures += 1
        if self.several and ep.up and (dead or ep.failures >= self.down_after):
            self.mark_down(ep, reason)

    def mark_down(self, ep: Endpoint, reason: str, *, quiet: bool = False) -> None:
        ep.up = False
        ep.down_reason = reason
        ep.times_down += 1
        ep.next_probe = time.monotonic() + self.probe_interval_s
        if not quiet:
            live = ", ".join(e.label for e in self.up()) or "none (requests wait for one to come back)"
            print(f"endpoint {ep.label} is down ({reason}); its requests go to: {live}", file=sys.stderr, flush=True)

    def mark_up(self, ep: Endpoint) -> None:
        ep.up = True
        ep.failures = 0
        ep.down_reason = ""
        print(f"endpoint {ep.label} is back", file=sys.stderr, flush=True)

    def describe(self) -> str:
        """Each endpoint with its state, for error messages."""
        return ", ".join(e.label + ("" if e.up else f" (down: {e.down_reason})") for e in self.endpoints)

    def _probe_due(self) -> None:
        if self.probe is None:
            return
        now = time.monotonic()
        for ep in self.endpoints:
            if not ep.up and not ep.probing and now >= ep.next_probe:
                ep.probing = True
                task = asyncio.get_running_loop().create_task(self._run_probe(ep))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _run_probe(self, ep: Endpoint) -> None:
        assert self.probe is not None
        try:
            healthy = await self.probe(ep)
        except Exception as exc:  # noqa: BLE001 - a failed probe only means: still down
            healthy = False
            ep.down_reason = f"probe: {type(exc).__name__}: {exc}"
        finally:
            ep.probing = False
            ep.next_probe = time.monotonic() + self.probe_interval_s
        if healthy and not ep.up:
            self.mark_up(ep)

    async def close(self) -> None:
        """Stop the probes in flight."""
        loop = asyncio.get_running_loop()
        tasks = list(self._probes)
        for task in tasks:
            task.cancel()
        # Probes started on another event loop (a backend used from several) cannot be awaited here.
        mine = [t for t in tasks if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)
        self._probes.clear()

    def stats(self) -> list[dict]:
        return [
            {"url": e.label, "up": e.up, "answered": e.answered, "times_down": e.times_down, "in_flight": e.in_flight}
            for e in self.endpoints
        ]
