"""A test double of a fast model server for ``arcsynth bench pipeline``.

:class:`OpenAIServerDouble` speaks the OpenAI chat-completions protocol on
127.0.0.1 (``GET /v1/models``, ``POST /v1/chat/completions`` with ``n``) and
answers at once, or after a set latency, with completions shaped like a code
model's: prose around a fenced ```python block, sometimes a ``<think>``
section, a function named ``solve`` instead of ``transform``, bare code without
fences, a reply cut off at the token limit, or no code at all.

The programs come from a pool written for real ARC-AGI-1 training tasks:
correct solutions of the tasks listed in :data:`SOLUTIONS` (verified in the
sandbox by the tests), and parametric families that are wrong for most tasks
(rotations, flips, colour maps, tilings, crops, gravity, pure-Python flood
fills and connected components, ``scipy.ndimage`` labelling) or crash
(IndexError, a bad reshape, NameError, ``None`` returned, a syntax error).
Each task gets its own repertoire drawn with a seeded RNG, and completions are
drawn from it with a skew, so a task sees repeated programs (some only
reformatted or recommented) as real models repeat themselves.

The server recognises the task of a prompt by its grids: the digits of each
task's grids are looked up in the digits of the prompt, whatever the encoding.
It runs in its own process (``python -m agent.benchmarks.server_double``) so that its
work is not counted against the agent's main process.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import socket
import sys
import threading
import time
from typing import Any, Callable, Optional

from sandbox.bench import FLOOD_FILL

MODEL_NAME = "pipeline-double"
"""The model id the double serves."""

# ---------------------------------------------------------------------------------------
# The program pool

SOLUTIONS: dict[str, str] = {
    "3c9b0459": "def transform(grid):\n    return np.rot90(grid, 2)\n",
    "6150a2bd": "def transform(grid):\n    return grid[::-1, ::-1].copy()\n",
    "67a3c6ac": "def transform(grid):\n    return np.fliplr(grid)\n",
    "68b16354": "def transform(grid):\n    return [list(row) for row in grid[::-1]]\n",
    "74dd1130": "def transform(grid):\n    return grid.T.copy()\n",
    "9dfd6313": "def transform(grid):\n    return np.array(grid).T\n",
    "ed36ccf7": "def transform(grid):\n    return np.rot90(grid, 1)\n",
    "a416b8f3": "def transform(grid):\n    return np.hstack([grid, grid])\n",
    "c8f0f002": "def transform(grid):\n    out = grid.copy()\n    out[out == 7] = 5\n    return out\n",
    "b1948b0a": "def transform(grid):\n    out = grid.copy()\n    out[grid == 6] = 2\n    return out\n",
    "d511f180": "def transform(grid):\n    out = grid.copy()\n    out[grid == 5] = 8\n    out[grid == 8] = 5\n    return out\n",
    "c59eb873": "def transform(grid):\n    return np.kron(grid, np.ones((2, 2), dtype=int))\n",
    "9172f3a0": "def transform(grid):\n    return np.repeat(np.repeat(grid, 3, axis=0), 3, axis=1)\n",
    "c9e6f938": "def transform(grid):\n    return np.hstack([grid, np.fliplr(grid)])\n",
    "8be77c9e": "def transform(grid):\n    return np.vstack([grid, np.flipud(grid)])\n",
    "6fa7a44f": "def transform(grid):\n    return np.vstack([grid, grid[::-1]])\n",
    "4c4377d9": "def transform(grid):\n    return np.vstack([np.flipud(grid), grid])\n",
    "d10ecb37": "def transform(grid):\n    return grid[:2, :2]\n",
    "3af2c5a8": "def transform(grid):\n    top = np.hstack([grid, np.fliplr(grid)])\n    return np.vstack([top, np.flipud(top)])\n",
}
"""Correct programs for real ARC-AGI-1 training tasks, by task id."""


# A client opening its whole pool at once (64 connections) must not see resets a real
# server (uvicorn: a backlog of 2048) never gives.
_BACKLOG = 1024


def _pick(rng: random.Random, items: list) -> Any:
    return items[rng.randrange(len(items))]


def _numpy_family(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        return f"def transform(grid):\n    return np.rot90(grid, {rng.randint(1, 3)})\n"
    if kind == 1:
        return f"def transform(grid):\n    return np.{_pick(rng, ['fliplr', 'flipud', 'transpose'])}(grid)\n"
    if kind == 2:
        pairs = [(rng.randrange(10), rng.randrange(10)) for _ in range(rng.randint(1, 3))]
        body = "".join(f"    out[grid == {a}] = {b}\n" for a, b in pairs)
        return f"def transform(grid):\n    out = grid.copy()\n{body}    return out\n"
    if kind == 3:
        r, c = rng.randint(1, 3), rng.randint(1, 3)
        return (f"def transform(grid):\n    h, w = grid.shape\n    if h * {r} > 30 or w * {c} > 30:\n        return grid\n"
                f"    return np.tile(grid, ({r}, {c}))\n")
    if kind == 4:
        k = rng.randint(2, 3)
        return f"def transform(grid):\n    return np.kron(grid, np.ones(({k}, {k}), dtype=int))[:30, :30]\n"
    if kind == 5:
        colour = rng.randrange(1, 10)
        return (f"def transform(grid):\n    ys, xs = np.nonzero(grid == {colour})\n    if len(ys) == 0:\n"
                "        ys, xs = np.nonzero(grid)\n    if len(ys) == 0:\n        return grid\n"
                "    return grid[ys.min():ys.max() + 1, xs.min():xs.max() + 1]\n")
    if kind == 6:
        axis = rng.randrange(2)
        return (f"def transform(grid):\n    out = np.zeros_like(grid)\n    g = grid if {axis} == 0 else grid.T\n"
                f"    o = out if {axis} == 0 else out.T\n    for c in range(g.shape[1]):\n        col = g[:, c]\n"
                "        vals = col[col != 0]\n        if len(vals):\n            o[-len(vals):, c] = vals\n    return out\n")
    if kind == 7:
        dy, dx = rng.randint(-2, 2), rng.randint(-2, 2)
        return f"def transform(grid):\n    return np.roll(grid, ({dy}, {dx}), axis=(0, 1))\n"
    colour = rng.randrange(1, 10)
    return (f"def transform(grid):\n    out = grid.copy()\n    out[0, :] = {colour}\n    out[-1, :] = {colour}\n"
            f"    out[:, 0] = {colour}\n    out[:, -1] = {colour}\n    return out\n")


def _flood_fill(rng: random.Random) -> str:
    # The sandbox benchmark's flood fill of enclosed background, in a colour drawn here.
    return FLOOD_FILL.replace("g[r][c] = 4", f"g[r][c] = {rng.randrange(1, 10)}")


def _components(rng: random.Random) -> str:
    pick = _pick(rng, ["max", "min"])
    return f"""def find_objects(g, bg):
    h, w = len(g), len(g[0])
    seen = set()
    objects = []
    for r in range(h):
        for c in range(w):
            if g[r][c] == bg or (r, c) in seen:
                continue
            stack = [(r, c)]
            seen.add((r, c))
            cells = []
            while stack:
                y, x = stack.pop()
                cells.append((y, x))
                for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if 0 <= ny < h and 0 <= nx < w and (ny, nx) not in seen and g[ny][nx] != bg:
                        seen.add((ny, nx))
                        stack.append((ny, nx))
            objects.append(cells)
    return objects


def transform(grid):
    g = grid.tolist()
    bg = max(range(10), key=lambda k: sum(row.count(k) for row in g))
    objects = find_objects(g, bg)
    if not objects:
        return g
    best = {pick}(objects, key=len)
    ys = [p[0] for p in best]
    xs = [p[1] for p in best]
    return [row[min(xs):max(xs) + 1] for row in g[min(ys):max(ys) + 1]]
"""


def _scipy_label(rng: random.Random) -> str:
    keep = _pick(rng, ["argmax", "argmin"])
    return f"""from scipy import ndimage


def transform(grid):
    labels, n = ndimage.label(grid != 0)
    if n == 0:
        return grid
    sizes = ndimage.sum(np.ones_like(grid), labels, range(1, n + 1))
    keep = int(np.{keep}(sizes)) + 1
    return np.where(labels == keep, grid, 0)
"""


def _majority(rng: random.Random) -> str:
    return ("from collections import Counter\n\n\ndef transform(grid):\n"
            "    counts = Counter(v for row in grid.tolist() for v in row)\n"
            f"    colour = counts.most_common({rng.randint(1, 2)})[-1][0]\n"
            "    return [[colour if v != 0 else 0 for v in row] for row in grid.tolist()]\n")


def _crash(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return f"def transform(grid):\n    return grid[[len(grid) + {rng.randint(1, 9)}]]\n"
    if kind == 1:
        return f"def transform(grid):\n    return grid.reshape({rng.randint(7, 11)}, -1)\n"
    if kind == 2:
        return f"def transform(grid):\n    grid[0, 0] = {rng.randrange(10)}\n"
    if kind == 3:
        return f"def transform(grid):\n    return apply_rule_{rng.randrange(100)}(grid)\n"
    if kind == 4:
        return "def transform(grid):\n    h, w = grid.shape\n    return [[grid[r][c] // (c - c) for c in range(w)] for r in range(h)]\n"
    return f"def transform(grid):\n    out = grid[:{rng.randint(1, 2)}, :1]\n    return out\n"


_FAMILIES: list[tuple[Callable[[random.Random], str], int]] = [
    (_numpy_family, 40), (_flood_fill, 9), (_components, 9), (_scipy_label, 5), (_majority, 6), (_crash, 16),
]


def repertoire(task_id: str, size: int, seed: int = 0) -> list[str]:
    """The programs the double's "model" knows for ``task_id``: ``size`` sources, with the task's solution if known."""
    rng = random.Random(f"{seed}/{task_id}")
    funcs = [f for f, _ in _FAMILIES]
    weights = [w for _, w in _FAMILIES]
    programs = [rng.choices(funcs, weights)[0](rng) for _ in range(size)]
    if task_id in SOLUTIONS:
        programs[rng.randrange(size)] = SOLUTIONS[task_id]
        programs[rng.randrange(size)] = SOLUTIONS[task_id]
    return ["import numpy as np\n\n\n" + p if "np." in p and rng.random() < 0.7 else p for p in programs]


# ---------------------------------------------------------------------------------------
# Completions

_ANALYSIS = [
    "Looking at the training examples, the output grid is derived from the input by a fixed rule.",
    "In every example the shapes keep their colours, but their positions change in a consistent way.",
    "The background is black (0) and the objects are the non-zero cells.",
    "Comparing input and output sizes, the output has a different shape in some examples, so the rule may crop or tile.",
    "Example 1 shows the key idea most clearly: each coloured cell is moved or recoloured by the same transformation.",
    "Let me check this hypothesis against the second and third examples before writing the code.",
    "The test input follows the same pattern, so the same function should apply.",
    "I will use numpy for the array manipulation since the grid arrives as a numpy array.",
]
_CLOSING = [
    "This function applies the transformation consistently to every example.",
    "The approach handles grids of any size and leaves the background unchanged.",
    "It should produce the expected outputs for all the training pairs and for the test input.",
    "",
]
_COMMENTS = ["# apply the rule found in the examples", "# work on a copy of the grid", "# the output follows the same pattern", ""]


def _prose(rng: random.Random, sentences: int) -> str:
    return " ".join(_pick(rng, _ANALYSIS) for _ in range(sentences))


def _cosmetic(code: str, rng: random.Random) -> str:
    """The same program as a model might write it again: a comment or docstring added, which normalise away."""
    comment = _pick(rng, _COMMENTS)
    if comment and rng.random() < 0.5:
        code = code.replace("def transform(grid):\n", f"def transform(grid):\n    {comment}\n", 1)
    elif rng.random() < 0.3:
        code = code.replace("def transform(grid):\n", 'def transform(grid):\n    """Transform the grid."""\n', 1)
    return code


def render_completion(code: str, rng: random.Random, max_tokens: int) -> tuple[str, str]:
    """A reply around ``code`` in one of the shapes real models write; (text, finish_reason)."""
    kind = rng.choices(["fenced", "think", "renamed", "bare", "cut", "prose"], [62, 12, 6, 4, 6, 10])[0]
    code = _cosmetic(code, rng)
    intro = _prose(rng, rng.randint(2, 6))
    outro = _pick(rng, _CLOSING)
    if kind == "think":
        thinking = _prose(rng, rng.randint(4, 10))
        text = f"<think>\n{thinking}\n\n```python\ndef transform(grid):\n    return grid\n```\n</think>\n\n{intro}\n\n```python\n{code}```\n\n{outro}"
    elif kind == "renamed":
        text = f"{intro}\n\n```python\n{code.replace('def transform(', 'def solve(')}```\n\n{outro}"
    elif kind == "bare":
        text = f"{code}\n{outro}"
    elif kind == "cut":
        lines = code.split("\n")
        text = f"{intro}\n\n```python\n" + "\n".join(lines[: max(2, len(lines) // 2)])
        return text, "length"
    elif kind == "prose":
        text = f"{intro} {_prose(rng, 3)} Without more examples I cannot pin down the exact rule."
    else:
        text = f"{intro}\n\n```python\n{code}```\n\n{outro}"
    # A reply longer than max_tokens (~3.5 characters per token) is cut where the model would stop.
    limit = int(max_tokens * 3.5)
    if len(text) > limit:
        return text[:limit], "length"
    return text, "stop"


# ---------------------------------------------------------------------------------------
# The server


REPLIES_PER_TASK = 512
"""Rendered replies per task: enough that a task's 64-208 programs repeat about as a model's do."""
_NO_LIMIT = 1 << 30


_NON_DIGITS = bytes(c for c in range(256) if not 0x30 <= c <= 0x39)
"""Every byte but the ASCII digits (grids are written in those)."""
_OPENING = 256
"""Digits at the start of a prompt by which the task finder remembers the task found."""
_HEAD = 16
"""Digits of a grid's start by which the task finder indexes it."""
_LEAD = 48
"""Digits a prompt may hold before its first grid (example numbers, sizes)."""


def _head(grid: str) -> Optional[str]:
    """``_HEAD`` digits from the grid's first non-background cell, where that is near its start
    (runs of zeros open many grids, so they tell tasks apart poorly); None if there are none."""
    k = len(grid) - len(grid.lstrip("0"))
    return grid[k:k + _HEAD] if k + _HEAD <= _OPENING - _LEAD and len(grid) - k >= _HEAD else None


class TaskFinder:
    """The task a prompt is about, from the digits of its grids (whatever the grid encoding)."""

    def __init__(self, tasks: dict[str, list[str]]):
        # Per task: the digit strings of its train inputs and outputs, longest first.
        self._grids = {tid: sorted(grids, key=len, reverse=True) for tid, grids in tasks.items()}

        # A task's prompts (first ones and refinements) open with its grids: the task found
        # for an opening is tried first, so a request costs one search, not one per task.
        self._by_opening: dict[str, str] = {}
        # Tasks by digits near the start of each of their grids (the opening of a prompt holds
        # those of its first grid), and the tasks with no grid to index that way.
        self._by_head: dict[str, set[str]] = {}
        self._small: list[str] = []
        for tid, grids in self._grids.items():
            heads = [_head(g) for g in grids]
            for h in heads:
                if h is not None:
                    self._by_head.setdefault(h, set()).add(tid)
            if all(h is None for h in heads):
                self._small.append(tid)

    def find(self, prompt: str) -> Optional[str]:
        # bytes.translate, not re.sub(r"\D", ...): 6 us against 330 us for a 5 KB prompt,
        # CPU the double would take from the agent it measures.
        digits = prompt.encode("ascii", "ignore").translate(None, _NON_DIGITS).decode("ascii")
        opening = digits[:_OPENING]
        known = self._by_opening.get(opening)
        if known is not None and self._grids[known][0] in digits:
            return known
        # The first grid shown starts near the opening: only the tasks with a grid that
        # starts there are scored, unless none has.
        candidates = set(self._small)
        for i in range(len(opening) - _HEAD + 1):
            candidates.update(self._by_head.get(opening[i:i + _HEAD], ()))
        best, best_hits = None, 0
        for tid in sorted(candidates) if candidates else self._grids:
            hits = sum(len(g) for g in self._grids[tid] if g in digits)
            if hits > best_hits:
                best, best_hits = tid, hits
        if best is not None:
            self._by_opening[opening] = best
        return best


class OpenAIServerDouble:
    """Test double of an OpenAI-compatible model server (see the module docstring).

    ``latency_s`` delays every answer (a model that takes time); requests are
    answered concurrently, on one event loop.
    """

    def __init__(self, tasks: dict[str, list[str]], *, latency_s: float = 0.0, seed: int = 0, repertoire_size: int = 64):
        self.finder = TaskFinder(tasks)
        self.latency_s = latency_s
        self.seed = seed
        self.repertoire_size = repertoire_size
        self._replies: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self.requests = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._port = 0

    def replies(self, task_id: Optional[str]) -> list[tuple[str, str]]:
        """The double's rendered replies for ``task_id`` as (text, finish_reason), before any token limit.

        Rendered once per task, ``REPLIES_PER_TASK`` of them, drawn from the task's
        repertoire with a skew towards its first programs (models repeat favourites):
        answering a request then only picks from them, so the double's own CPU, which
        shares the machine with the agent under test, stays small.
        """
        key = task_id or "?"
        with self._lock:
            replies = self._replies.get(key)
            if replies is None:
                programs = repertoire(key, self.repertoire_size, self.seed)
                rng = random.Random(f"{self.seed}/{key}/replies")
                replies = []
                for _ in range(REPLIES_PER_TASK):
                    code = programs[min(int(rng.expovariate(2.0 / len(programs))), len(programs) - 1)]
                    replies.append(render_completion(code, rng, _NO_LIMIT))
                self._replies[key] = replies
            return replies

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat-completion answer to one request body."""
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        task_id = self.finder.find(prompt)
        replies = self.replies(task_id)
        n = int(body.get("n") or 1)
        # A reply longer than max_tokens (~3.5 characters per token) is cut where the model would stop.
        limit = int(int(body.get("max_tokens") or 1024) * 3.5)
        seed = body.get("seed")
        rng = random.Random(f"{seed}/{task_id}" if seed is not None else None)
        choices, total = [], 0
        for i in range(n):
            text, reason = replies[rng.randrange(len(replies))]
            if len(text) > limit:
                text, reason = text[:limit], "length"
            tokens = max(1, int(len(text) / 3.5))
            total += tokens
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason})
        prompt_tokens = int(sum(len(str(m.get("content", ""))) for m in messages) / 3.5)
        return {
            "id": "chatcmpl-" + hashlib.sha1(f"{seed}/{self.requests}".encode()).hexdigest()[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL_NAME,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": total, "total_tokens": prompt_tokens + total},
        }

    def serve(self, port: int = 0) -> int:
        """Start serving on 127.0.0.1 in a background thread (an event loop of its own); returns the port.

        An asyncio server, as real model servers are. Its CPU is taken from the agent being
        measured (they share the cores), and a thread per connection with ``http.server``
        cost more of it per request.
        """
        from aiohttp import web

        started = threading.Event()
        failure: list[BaseException] = []

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "arcsynth"}]})

        async def completions(request: web.Request) -> web.Response:
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            with self._lock:
                self.requests += 1
            return web.Response(body=json.dumps(self.answer(body)).encode(), content_type="application/json")

        async def elsewhere(request: web.Request) -> web.Response:
            return web.json_response({"error": {"message": f"no route {request.path}"}}, status=404)

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                app = web.Application(client_max_size=64 << 20)
                app.router.add_get("/v1/models", models)
                app.router.add_get("/models", models)
                app.router.add_post("/v1/chat/completions", completions)
                app.router.add_post("/chat/completions", completions)
                app.router.add_route("*", "/{tail:.*}", elsewhere)
                runner = web.AppRunner(app, access_log=None)
                loop.run_until_complete(runner.setup())
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(_BACKLOG)
                self._port = sock.getsockname()[1]
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as e:  # noqa: BLE001 - reported to the thread that called serve()
                failure.append(e)
                started.set()
                loop.close()
                return
            self._loop = loop
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="server-double", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self._port

    def shutdown(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def task_grids(dataset: str, task_ids: list[str]) -> dict[str, list[str]]:
    """Digit strings of each task's train grids (what :class:`TaskFinder` looks for)."""
    from arcsynth.datasets import load_dataset

    wanted = set(task_ids)
    out: dict[str, list[str]] = {}
    for task in load_dataset(dataset):
        if task.id in wanted:
            grids = [p.input for p in task.train] + [p.output for p in task.train if p.output is not None]
            out[task.id] = ["".join(str(int(v)) for v in g.flatten()) for g in grids]
    return out


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description="OpenAI-compatible server double for arcsynth bench pipeline")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    ap.add_argument("--seed", type=int, default=0, help="seed of the task repertoires")
    ap.add_argument("--dataset", default="arc1:train", help="dataset of the tasks")
    ap.add_argument("--tasks", required=True, help="comma-separated task ids")
    args = ap.parse_args(argv)
    task_ids = args.tasks.split(",")
    double = OpenAIServerDouble(task_grids(args.dataset, task_ids), latency_s=args.latency_ms / 1000, seed=args.seed)
    for task_id in task_ids:
        double.replies(task_id)
    port = double.serve(args.port)
    started = time.process_time()  # what serving costs, without loading the tasks or rendering replies
    print(f"listening {port}", flush=True)
    # Serve until stdin closes (the benchmark exits or is killed), then say what it cost.
    sys.stdin.read()
    double.shutdown()
    print(f"cpu {time.process_time() - started:.3f} requests {double.requests}", flush=True)


if __name__ == "__main__":
    main()
