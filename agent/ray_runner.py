"""Spread a run's tasks over the nodes of a Ray cluster (``arcsynth solve --ray ADDRESS``).

The driver (the ``arcsynth solve`` process) keeps everything a one-process run
does: the run directory, the trace, results, resume and the summary. What moves to
the cluster is the solving: one :class:`NodeSolver` actor per node that offers a CPU,
each with its own sandbox pool and its own model backend (``model.base_url`` must be
reachable from every node: a ``vllm serve`` per node, a data-parallel server, a
gateway). The driver hands tasks out as nodes free up, ``concurrency`` tasks in
flight per node, and each task's trace events stream back while it runs (a batch
every :data:`FLUSH_S`); the driver writes them to the one trace and the task's
result to ``results/`` when it ends. A task's result does not depend on where or
beside what it ran, so the submission is the one a one-process run writes.

A node lost mid-run (its actor dies) has its tasks handed to the other nodes; they
start again from the beginning, as a resume would start them. Every node must run
the same arcsynth (same version, same Python packages): results would differ otherwise.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.runner import RunSummary, summarize

__all__ = ["FLUSH_S", "RayUnavailable", "RayRunError", "NodeInfo", "require_ray", "run_tasks_on_ray"]

FLUSH_S = 0.5
"""How often a node sends the events of a task in flight back to the driver."""

INSTALL_HINT = "pip install 'arcsynth[ray]' (or pip install ray) on the driver and on every node"


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached or used; the message says which."""


class RayRunError(RuntimeError):
    """A node failed in a way that stops the run (an error outside any one task)."""


def require_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


# ---------------------------------------------------------------------------------------
# The node side


_current_events: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("arcsynth_task_events", default=None)


class _TaskEvents:
    """The recorder a node's tasks write to: events go to the buffer of the task whose coroutine emits them.

    Token counts are emitted by the backend wrapper shared by all tasks of a node; the
    context variable routes each to the task that asked (asyncio copies the context
    into every coroutine a task starts).
    """

    def emit(self, event: Any) -> None:
        buf = _current_events.get()
        if buf is not None:
            buf.append(event)


class NodeSolver:
    """Solves tasks on one node: one sandbox pool and one model backend for all its tasks.

    Used as a Ray actor (async, so its tasks share the node's event loop as a
    one-process run's tasks share one).
    """

    def __init__(self, config_tree: dict[str, Any]):
        from agent.config import parse_config

        self.cfg = parse_config(config_tree, source="config sent by the driver")
        self.sandbox: Any = None
        self.backend: Any = None
        self.counted: Any = None
        self.events = _TaskEvents()

    async def start(self) -> dict[str, Any]:
        """Start the sandbox pool and the backend; what the driver records of this node."""
        from agent.backends import BackendError, make_backend
        from agent.backends.replay import TokenCountRecorder
        from sandbox import Sandbox, SandboxUnavailable

        host = socket.gethostname()
        try:
            self.sandbox = Sandbox(self.cfg.sandbox)
            await self.sandbox.__aenter__()
        except SandboxUnavailable as e:
            return {"host": host, "error": f"sandbox: {e}"}
        try:
            self.backend = make_backend(self.cfg.model)
            await self.backend.start()
        except BackendError as e:
            return {"host": host, "error": f"model backend '{self.cfg.model.backend}' cannot serve: {e}"}
        self.counted = TokenCountRecorder(self.backend, self.events.emit)
        model = None
        if hasattr(self.backend, "provenance"):
            try:
                model = self.backend.provenance()
            except Exception as e:  # noqa: BLE001 - provenance never fails a run
                model = {"error": f"{type(e).__name__}: {e}"}
        return {"host": host, "pid": os.getpid(), "sandbox_layers": list(getattr(self.sandbox, "layers", []) or []),
                "model": model}

    async def solve(self, task: Any):  # an async generator: Ray streams what it yields
        """Solve one task; yields ``("events", [...])`` batches while it runs, then ``("result", outcome)``."""
        from agent.loop import SolveContext, solve_task

        buf: list[Any] = []
        token = _current_events.set(buf)
        try:
            ctx = SolveContext(config=self.cfg, backend=self.counted, sandbox=self.sandbox, recorder=self.events)
            job = asyncio.ensure_future(solve_task(task, ctx))
        finally:
            _current_events.reset(token)
        try:
            while not job.done():
                await asyncio.wait([job], timeout=FLUSH_S)
                if buf:
                    batch = buf[:]
                    del buf[:]
                    yield ("events", batch)
            outcome = job.result()
        finally:
            if not job.done():  # the driver went away: stop the task, not the node
                job.cancel()
        if buf:
            yield ("events", buf[:])
        yield ("result", outcome.model_dump(mode="json"))

    def stats(self) -> dict[str, Any]:
        s = getattr(self.sandbox, "stats", None)
        return dict(s) if isinstance(s, dict) else {}

    async def close(self) -> None:
        if self.backend is not None:
            try:
                await self.backend.close()
            finally:
                self.backend = None
        if self.sandbox is not None:
            try:
                await self.sandbox.__aexit__(None, None, None)
            finally:
                self.sandbox = None


# ---------------------------------------------------------------------------------------
# The driver side


@dataclass
class NodeInfo:
    node_id: str
    host: str
    actor: Any = None
    started: dict[str, Any] = field(default_factory=dict)
    tasks: int = 0
    alive: bool = True


def _alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive") and float((n.get("Resources") or {}).get("CPU", 0)) >= 1]


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Refuse at once a ``host:port`` where nothing listens.

    ``ray.init`` would retry such an address for minutes before giving up; ``auto``
    and ``ray://`` addresses are left to Ray.
    """
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayUnavailable(f"--ray {address}: give the head node's host:port (e.g. 10.0.0.1:6379, "
                             f"as `ray start --head` prints), 'auto' on a node of the cluster, or a ray:// address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayUnavailable(f"--ray {address}: no Ray cluster listens there ({e.strerror or e}); start one with "
                             f"`ray start --head --port {port}`, or give its head node's host:port") from None


def connect(address: str) -> Any:
    """``ray.init`` on ``address``; :class:`RayUnavailable` when there is no cluster there."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    check_address(address)
    try:
        # log_to_driver off: the nodes' own output (sandbox, backend) would interleave with the progress display.
        ray.init(address=address, log_to_driver=False, logging_level="WARNING", configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayUnavailable(f"--ray {address}: cannot connect to a Ray cluster there ({e}); "
                             f"start one with `ray start --head`, or give its address (host:port)") from None
    return ray


def _sum_stats(per_node: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in per_node:
        for k, v in s.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("elapsed_s", "candidates_per_s"):
                out[k] = out.get(k, 0) + v
    out["nodes"] = len(per_node)
    return out


async def run_tasks_on_ray(
    tasks: list[Any], cfg: Any, recorder: Any, *, address: str, done: set[str] | frozenset[str] = frozenset(),
    on_start: Callable[[list[NodeInfo]], None] | None = None,
) -> tuple[RunSummary, list[NodeInfo], dict[str, Any]]:
    """Solve the tasks not in ``done`` on the cluster at ``address``, writing through ``recorder``.

    ``on_start`` is called once every node has started (the driver records provenance
    then). Returns the run totals, the nodes and the summed sandbox counters of all nodes.
    Raises :class:`RayUnavailable` when the cluster cannot be used and
    :class:`RayRunError` when no node is left to solve on.
    """
    ray = connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    todo = [t for t in tasks if t.id not in done]
    nodes = [NodeInfo(node_id=n["NodeID"], host=str(n.get("NodeManagerHostname") or n.get("NodeManagerAddress")))
             for n in _alive_nodes(ray)]
    if not nodes:
        raise RayUnavailable(f"--ray {address}: no node of the cluster offers a CPU to run tasks on")
    actor_cls = ray.remote(NodeSolver)
    tree = cfg.model_dump(mode="json")
    for n in nodes:
        # One actor per node, pinned there: each node runs its own sandbox pool.
        n.actor = actor_cls.options(
            num_cpus=1, max_concurrency=max(64, 4 * cfg.concurrency),
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n.node_id, soft=False),
        ).remote(tree)
    try:
        started = await asyncio.gather(*(n.actor.start.remote() for n in nodes), return_exceptions=True)
        for n, s in zip(nodes, started):
            if isinstance(s, BaseException):
                raise RayUnavailable(f"--ray {address}: node {n.host} could not start: {_reason(s)}")
            n.started = s
            if s.get("error"):
                raise RayUnavailable(f"--ray {address}: node {n.host}: {s['error']}")
        if on_start is not None:
            on_start(nodes)
        summary = await _dispatch(ray, todo, cfg, recorder, nodes, len(tasks) - len(todo))
        live = [n for n in nodes if n.alive]
        stats = await asyncio.gather(*(n.actor.stats.remote() for n in live), return_exceptions=True)
        sandbox = _sum_stats([s for s in stats if isinstance(s, dict)])
    finally:
        await _close(ray, nodes)
    summary.sandbox = sandbox
    return summary, nodes, sandbox


def _reason(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    return f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(e).__name__}: {e}".splitlines()[0]


async def _close(ray: Any, nodes: list[NodeInfo]) -> None:
    closing = [n.actor.close.remote() for n in nodes if n.actor is not None and n.alive]
    if closing:
        await asyncio.wait([asyncio.ensure_future(_quiet(c)) for c in closing], timeout=30)
    for n in nodes:
        if n.actor is not None:
            try:
                ray.kill(n.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


async def _quiet(ref: Any) -> None:
    try:
        await ref
    except Exception:  # noqa: BLE001 - a node that cannot close cleanly is killed next
        pass


async def _dispatch(ray: Any, todo: list[Any], cfg: Any, recorder: Any, nodes: list[NodeInfo], skipped: int) -> RunSummary:
    """Hand tasks to nodes as they free up; write each task's events and result as they come."""
    import ray.exceptions as rex
    from ray.exceptions import RayTaskError

    from agent.loop import TaskOutcome
    from agent.trace import TokenCount

    # What a lost node raises; the finer classes exist in newer Ray versions only.
    lost = tuple(getattr(rex, name) for name in ("RayActorError", "ActorDiedError", "ActorUnavailableError", "NodeDiedError")
                 if hasattr(rex, name))
    queue: deque[Any] = deque(todo)
    outcomes: dict[str, TaskOutcome] = {}
    counted: set[str] = set()
    started = time.monotonic()
    failure: list[BaseException] = []

    def write(events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, TokenCount):
                # Every node counts a prompt once; the trace needs each count once.
                if ev.key in counted:
                    continue
                counted.add(ev.key)
            recorder.emit(ev)

    async def one(node: NodeInfo, task: Any) -> None:
        result: dict[str, Any] | None = None
        gen = node.actor.solve.options(num_returns="streaming").remote(task)
        async for ref in gen:
            kind, payload = await ref
            if kind == "events":
                write(payload)
            else:
                result = payload
        if result is None:
            raise RayRunError(f"node {node.host} ended task {task.id} without a result")
        outcomes[task.id] = TaskOutcome.model_validate(result)
        node.tasks += 1
        record = getattr(recorder, "task_done", None)
        if record is not None:
            record(task.id, result)

    async def lane(node: NodeInfo) -> None:
        while queue and node.alive and not failure:
            task = queue.popleft()
            try:
                await one(node, task)
            except lost:
                # The node is gone; its task starts again elsewhere, as a resume would start it.
                node.alive = False
                queue.appendleft(task)
                return
            except RayTaskError as e:
                # Not a task's own failure (the loop records those as results): a bug or a
                # failed record on the node. The run stops, as a one-process run would.
                err = RayRunError(f"node {node.host}, task {task.id}: {_reason(e)}")
                failure.append(err)
                raise err from None
            except BaseException as e:
                failure.append(e)
                raise

    lanes = [asyncio.ensure_future(lane(n)) for n in nodes for _ in range(cfg.concurrency)]
    try:
        await asyncio.gather(*lanes)
    finally:
        for j in lanes:
            j.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
    if queue:
        raise RayRunError(f"every node of the Ray cluster was lost; {len(queue)} task(s) not done")
    wall = time.monotonic() - started
    return summarize(todo, outcomes, wall, None, skipped_done=skipped)
