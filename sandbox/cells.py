"""REPL cells: Python a model runs in the sandbox to look at a task before it answers.

A cell runs exactly where a candidate program runs: in a fresh child forked
from a worker's clean zygote, hardened the same way (``sandbox.worker``). State
persists across the cells of one conversation because each call re-executes the
conversation's earlier successful cells first, with their output discarded, and
only then the new one. So a cell that crashes, loops or patches the interpreter
costs its own call and nothing later, and no conversation ever sees another's
state (or a candidate's).

The request is an ordinary worker request with the cell magic
(``protocol.CELL_MAGIC``), its own CPU-time limit, and a JSON payload in place of
the program: the cells and the grids preloaded as globals (``train_inputs``,
``train_outputs``, ``test_inputs``; never test outputs, which the trusted side
does not send). The child answers with the cell's captured stdout and stderr
(bounded, as KIND_TEXT frames), then one frame for the cell: the grid its last
expression evaluated to (by value, as a program's output), its error, or
``NoGrid``; the trusted side parses all of it strictly.

The child-side half (:func:`run_cells`) is imported by the sandbox host before
any fork, so it imports only what a worker already has.
"""

from __future__ import annotations

import ast
import builtins
import json
import linecache
import sys
import time
import traceback
import types
from dataclasses import dataclass, field

import numpy as np

from sandbox import protocol as P

NO_GRID = "NoGrid"
"""error_type of the cell frame when the cell's last expression was not a grid (not an error)."""

MAX_CELL_TEXT = 1 << 17
"""Bytes of captured text a worker forwards for one cell; more breaks the protocol."""


# ---- in the cell's child ----


class _Capture:
    """A bounded stand-in for sys.stdout/sys.stderr: keeps the first ``limit`` characters, counts the rest.

    With ``wfd``, what it keeps is sent on as text frames line by line while the cell
    runs, so a cell stopped at its time limit (or killed) still shows what it printed
    before. At most ``limit`` characters are kept, which bounds the frames too.
    """

    def __init__(self, limit: int, wfd: int | None = None):
        self.limit = limit
        self.wfd = wfd
        self.unsent: list[str] = []
        self.kept = 0
        self.dropped = 0
        self.pending = 0

    def write(self, s: object) -> int:
        if type(s) is not str:
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.kept
        if room > 0:
            piece = s[:room]
            self.unsent.append(piece)
            self.kept += len(piece)
            self.pending += len(piece)
            if self.wfd is not None and ("\n" in piece or self.pending >= P.TEXT_CHUNK // 4):
                self.send()
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def send(self, final: bool = False) -> None:
        """Write what was kept and not sent yet as text frames; ``final`` adds the count of what was not kept."""
        from sandbox.worker import _write_all

        text = "".join(self.unsent)
        self.unsent, self.pending = [], 0
        if final and self.dropped:
            text += f"\n... [{self.dropped} more characters of output not shown]\n"
        if text and self.wfd is not None:
            _write_all(self.wfd, b"".join(P.text_frames(0, 0, text)))

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True



def _cell_traceback(exc: BaseException) -> str:
    """The traceback as Python prints it, without the runner's own frames."""
    try:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.format_list(frames[-8:])
        lines += traceback.format_exception_only(type(exc), exc)
        return "".join(lines)
    except BaseException:  # a hostile __str__ must not break the report
        return f"{type(exc).__name__}\n"


def _exec_cell(source: str, name: str, ns: dict) -> object:
    """Run one cell in ``ns``; the value of its last line when that is an expression (as a REPL shows it)."""
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    tree = ast.parse(source, name)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body.pop()
    exec(compile(tree, name, "exec"), ns)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), name, "eval"), ns)


def run_cells(rfd: int, wfd: int, payload: str) -> None:
    """In a cell's child: re-run the earlier cells silently, run the last one, report it.

    Frames carry nonce 0 (the zygote re-encodes them). Reads the request's one
    placeholder input first, so that the worker's time window opens on the cells.
    """
    from sandbox.worker import _cells, _describe, _read_exact, _write_all

    if _read_exact(rfd, 3) is None:  # the placeholder 1x1 input
        return
    t0 = time.process_time()
    frames: list[bytes] = []
    capture = None
    try:
        req = json.loads(payload)
        cells = [str(c) for c in req["cells"]]
        capture = _Capture(int(req.get("max_output", 4000)), wfd)
        module = types.ModuleType("__repl__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__repl__"] = module
        ns = module.__dict__
        ns["np"] = np
        for name in ("train_inputs", "train_outputs", "test_inputs"):
            ns[name] = [np.array(g, dtype=np.int64) for g in req.get(name, [])]
        quiet = _Capture(0)
        sys.stdout = sys.stderr = quiet  # type: ignore[assignment]
        for k, cell in enumerate(cells[:-1]):
            try:
                _exec_cell(cell, f"<cell {k}>", ns)
            except BaseException as e:
                raise _ReplayFailed(k, e) from None
        sys.stdout = sys.stderr = capture  # type: ignore[assignment]
        value = _exec_cell(cells[-1], f"<cell {len(cells) - 1}>", ns)
        res = _cells(value) if value is not None else NO_GRID
        if isinstance(res, str):
            if value is not None:
                try:
                    capture.write(repr(value)[: capture.limit + 1] + "\n")
                except BaseException as e:  # a hostile __repr__ costs its own display only
                    capture.write(f"<repr failed: {type(e).__name__}>\n")
            frame = P.encode_failure(0, 0, time.process_time() - t0, P.KIND_INVALID, NO_GRID, "")
        else:
            frame = P.encode_grid(0, 0, time.process_time() - t0, *res)
    except _ReplayFailed as e:
        msg = f"cell {e.index} failed when re-run before this one: {_describe(e.error)}"
        frame = P.encode_failure(0, 0, time.process_time() - t0, P.KIND_ERROR, "ReplayFailed", msg)
    except BaseException as e:  # SystemExit and friends cost this call only
        if capture is not None:
            capture.write(_cell_traceback(e))
        msg = f"line {e.lineno}: {e.msg}" if isinstance(e, SyntaxError) else _describe(e)
        frame = P.encode_failure(0, 0, time.process_time() - t0, P.KIND_ERROR, type(e).__name__, msg)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    if capture is not None:
        capture.send(final=True)
    frames.append(frame)
    frames.append(P.encode_end(0, 1, ""))
    _write_all(wfd, b"".join(frames))


class _ReplayFailed(Exception):
    def __init__(self, index: int, error: BaseException):
        super().__init__(index)
        self.index, self.error = index, error


# ---- on the trusted side ----


@dataclass
class CellResult:
    """What one cell did, as the trusted process parsed it."""

    status: str
    """'ok' (ran to its end), 'error' (raised), 'timeout' (over its CPU limit) or 'crashed' (its process died)."""
    output: str = ""
    """Captured stdout and stderr (with the traceback of an error), already bounded by the child."""
    grid: list[list[int]] | None = None
    """The grid the cell's last expression evaluated to, parsed strictly."""
    error_type: str = ""
    error: str = ""
    cpu_s: float = 0.0
    isolation: list[str] = field(default_factory=list)


def cell_payload(cells: list[str], grids: dict[str, list], max_output: int) -> str:
    """The JSON payload of a cell request: ``cells`` (the last one reported) and the preloaded grids."""
    allowed = {"train_inputs", "train_outputs", "test_inputs"}
    if set(grids) - allowed:
        raise ValueError(f"only {sorted(allowed)} are preloaded into a cell, got {sorted(grids)}")
    return json.dumps({"cells": list(cells), "max_output": int(max_output), **grids}, separators=(",", ":"))
