"""The trusted side of the process machinery: the host process and its workers.

All waiting is asyncio-friendly (readers on non-blocking pipes, timers on the
loop), so thousands of candidates can be in flight while a model generates in
the same process. Time limits are enforced here, by wall clock, with SIGKILL
sent through the host; a worker that timed out, crashed, broke the protocol or
reported a tainted state is replaced by a fresh fork.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from sandbox import protocol as P

# Results of one candidate fit in the pipe many times over; more is an attack.
_MAX_BUFFERED = 64 * P.MAX_RESULT_FRAME
_CONTROL_TIMEOUT_S = 30.0
# Workers send their results in one write per candidate, or sooner once this
# fraction of the pair limit has passed; a looping pair is therefore killed
# between 1 and 1 + FLUSH_FRACTION times the pair limit. Smaller means more
# writes for slow programs, larger means loops cost more.
FLUSH_FRACTION = 0.1
# The trusted side's wall-clock deadlines, past the worker's own backstop: for
# a worker that hangs, not for the program (whose limits the worker enforces).
HANG_FACTOR = 1.2
HANG_MARGIN_S = 1.0


class SandboxError(RuntimeError):
    """The sandbox machinery itself failed (the host process died or misbehaved)."""


class WorkerDied(Exception):
    pass


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass
class Worker:
    """One worker process as seen from the trusted side.

    Requests are pipelined: a second candidate may be written while the first
    runs, so the worker starts it without waiting for a round trip through the
    event loop. Candidates take numbered turns to read their results, in the
    order their requests were written.
    """

    pid: int
    rfd: int  # results, read end
    wfd: int  # requests, write end
    buf: bytearray = field(default_factory=bytearray)
    used: int = 0
    dead: bool = False
    next_seq: int = 0
    turn: int = 0
    tail_risky: bool = False  # the last request written may tamper with the worker
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    async def wait_turn(self, seq: int) -> None:
        """Until every earlier request has been answered, or the worker is gone."""
        while not self.dead and self.turn < seq:
            self.changed.clear()
            await self.changed.wait()

    def end_turn(self, seq: int) -> None:
        self.turn = max(self.turn, seq + 1)
        self.changed.set()

    def mark_dead(self) -> None:
        self.dead = True
        self.changed.set()

    def close_fds(self) -> None:
        # Idempotent: a closed fd number is soon reused, and closing it twice
        # would close someone else's file.
        fds, self.rfd, self.wfd = (self.rfd, self.wfd), -1, -1
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass
class Exchange:
    """What came back for one request: parsed pair results, then how it ended."""

    results: list[P.Result]
    outcome: str  # ok | timeout | died | protocol
    taint: str = ""
    elapsed: float = 0.0
    detail: str = ""
    text: str = ""
    """A REPL cell's captured output (text frames), empty for programs."""


class Host:
    """The sandbox host process, spoken to over a unix seqpacket socket."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket, hello: dict):
        self.proc = proc
        self.sock = sock
        self.hello = hello
        self._lock = asyncio.Lock()

    @classmethod
    async def launch(cls, make_argv: Callable[[int], list[str]], env: dict, timeout: float) -> Host:
        """Start the host; ``make_argv(fd)`` is its command line given its end of the control socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.set_inheritable(True)
        argv = make_argv(theirs.fileno())
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd="/",
            )
        except OSError as e:
            ours.close()
            theirs.close()
            raise SandboxError(f"cannot start the sandbox host: {e}") from e
        theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(ours, 65536), timeout)
        except (asyncio.TimeoutError, OSError):
            data = b""
        if not data:
            proc.kill()
            err = b""
            try:
                _, err = proc.communicate(timeout=5)
            except Exception:
                pass
            ours.close()
            tail = (err or b"").decode("utf-8", "replace").strip()[-600:]
            raise SandboxError(f"the sandbox host did not start: {tail or 'no output'}")
        if proc.stderr:
            proc.stderr.close()
        return cls(proc, ours, json.loads(data))

    async def call(self, cmd: dict, fds: tuple[int, ...] = ()) -> dict:
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                if fds:
                    socket.send_fds(self.sock, [json.dumps(cmd).encode()], list(fds))
                else:
                    self.sock.send(json.dumps(cmd).encode())
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), _CONTROL_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as e:
                raise SandboxError(f"the sandbox host stopped answering: {e!r}") from e
        if not data:
            raise SandboxError("the sandbox host process died")
        reply = json.loads(data)
        if "error" in reply:
            raise SandboxError(f"sandbox host: {reply['error']}")
        return reply

    async def spawn(self, uid_offset: int, once: bool) -> Worker:
        req_r, req_w = os.pipe2(os.O_CLOEXEC)
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        try:
            reply = await self.call({"op": "spawn", "uid_offset": uid_offset, "once": once}, (req_r, res_w))
        except BaseException:
            for fd in (req_w, res_r):
                os.close(fd)
            raise
        finally:
            os.close(req_r)
            os.close(res_w)
        os.set_blocking(req_w, False)
        os.set_blocking(res_r, False)
        return Worker(int(reply["pid"]), res_r, req_w)

    async def kill(self, w: Worker) -> str:
        """SIGKILL and reap ``w``; returns how it ended ('exited with status 3', ...)."""
        w.close_fds()
        reply = await self.call({"op": "kill", "pid": w.pid})
        return str(reply.get("status", ""))

    def discard(self, w: Worker) -> None:
        """SIGKILL and reap ``w`` without waiting for it."""
        w.close_fds()
        try:
            self.sock.send(json.dumps({"op": "discard", "pid": w.pid}).encode())
        except OSError as e:
            raise SandboxError(f"the sandbox host stopped answering: {e!r}") from e

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _fill(w: Worker) -> bool:
    """Read what the worker has written; False when nothing was waiting."""
    try:
        data = os.read(w.rfd, 65536)
    except BlockingIOError:
        return False
    except OSError as e:
        raise WorkerDied(str(e)) from e
    if not data:
        raise WorkerDied("end of file")
    w.buf += data
    if len(w.buf) > _MAX_BUFFERED:
        raise P.ProtocolError("worker flooded the result pipe")
    return True


async def _wait_fd(loop: asyncio.AbstractEventLoop, fd: int, deadline: float, *, write: bool = False) -> None:
    fut = loop.create_future()
    (loop.add_writer if write else loop.add_reader)(fd, _wake, fut)
    timer = loop.call_at(deadline, _wake, fut)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)
        timer.cancel()


async def _recv(loop: asyncio.AbstractEventLoop, w: Worker, deadline: float) -> bytes | None:
    """The next frame body, or None at the deadline.

    Whatever is readable is consumed before the deadline is judged, so a result
    that arrived while the event loop was busy elsewhere is not called a timeout.
    """
    while True:
        body = P.split_frame(w.buf)
        if body is not None:
            return body
        if _fill(w):
            continue
        if loop.time() >= deadline:
            return None
        await _wait_fd(loop, w.rfd, deadline)


async def _send(loop: asyncio.AbstractEventLoop, w: Worker, data: bytes, deadline: float) -> bool:
    view = memoryview(data)
    while view:
        try:
            n = os.write(w.wfd, view)
            view = view[n:]
            continue
        except BlockingIOError:
            pass
        except OSError as e:  # the worker is gone
            raise WorkerDied(str(e)) from e
        if loop.time() >= deadline:
            return False
        await _wait_fd(loop, w.wfd, deadline, write=True)
    return True


async def send(w: Worker, source: str, inputs: list, pair_timeout: float, timeout: float,
               cell_limit: float | None = None) -> tuple[int, int]:
    """Write one candidate's request (a REPL cell's with ``cell_limit``); returns its nonce and pair count."""
    loop = asyncio.get_running_loop()
    nonce = secrets.randbits(64)
    request = P.encode_request(nonce, source, inputs, pair_timeout * FLUSH_FRACTION, cell_limit)
    async with w.write_lock:
        if w.dead:
            raise WorkerDied("retired before the request was written")
        if not await _send(loop, w, request, loop.time() + timeout):
            raise WorkerDied("the worker did not take the request")
    w.used += 1
    return nonce, len(inputs)


async def collect(w: Worker, nonce: int, npairs: int, pair_timeout: float, candidate_timeout: float, backstop: float = 1.0,
                  *, cell: bool = False) -> Exchange:
    """Read one candidate's pair results and end frame, within the limits.

    Called when it is this candidate's turn, that is when the worker has
    finished the previous one and so has started this one. The worker batches
    its frames (see ``protocol.encode_request``) and writes whatever it holds
    once ``pair_timeout * FLUSH_FRACTION`` has passed, so silence longer than
    (1 + FLUSH_FRACTION) x ``pair_timeout`` means the pair being run is over its limit; pairs that
    finished but took longer than ``pair_timeout`` are judged from their
    reported runtime by the caller.

    The limits are CPU time, which the worker enforces and reports; the
    worker also ends a program that sleeps or blocks at ``backstop`` times a
    limit in wall-clock time. The deadlines here lie beyond the worker's, so
    they are reached only when the worker itself stops answering.

    ``cell``: a REPL cell's request, whose captured output may come as text
    frames before its result (gathered into ``Exchange.text``).
    """
    from sandbox.cells import MAX_CELL_TEXT

    loop = asyncio.get_running_loop()
    flush_s = pair_timeout * FLUSH_FRACTION
    start = last = loop.time()
    cand_deadline = start + candidate_timeout * backstop * HANG_FACTOR + HANG_MARGIN_S
    results: list[P.Result] = []
    text: list[str] = []
    text_bytes = 0
    i = 0
    try:
        while i <= npairs:
            # The end frame gets a pair's limit too.
            deadline = last + pair_timeout * backstop * HANG_FACTOR + flush_s + HANG_MARGIN_S
            if i < npairs:
                deadline = min(deadline, cand_deadline)
            body = await _recv(loop, w, deadline)
            if body is None:
                return Exchange(results, "timeout", elapsed=loop.time() - start)
            r = P.parse_result(body, nonce)
            if r.kind == P.KIND_TEXT:
                text_bytes += len(r.message.encode("utf-8"))
                if not cell or r.index != i or i == npairs or text_bytes > 2 * MAX_CELL_TEXT:
                    raise P.ProtocolError("unexpected text frame")
                text.append(r.message)
                continue
            if r.index != i or (r.kind == P.KIND_END) != (i == npairs):
                raise P.ProtocolError("result frames out of order")
            last = loop.time()
            if i == npairs:
                return Exchange(results, "ok", taint=r.message, elapsed=last - start, text="".join(text))
            results.append(r)
            i += 1
    except WorkerDied:
        return Exchange(results, "died", elapsed=loop.time() - start)
    except P.ProtocolError as e:
        return Exchange(results, "protocol", elapsed=loop.time() - start, detail=str(e))
    raise AssertionError("unreachable")
