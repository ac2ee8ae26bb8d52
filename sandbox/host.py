"""The sandbox host: a pre-warmed forking parent that never runs candidate code.

Started once per sandbox (inside bubblewrap when available) with a clean
environment. It imports numpy and the other allowed modules, prepares the
Landlock ruleset, proves the layers work in a probe child, freezes the heap so
forks stay cheap, then serves a few commands from the trusted process over a
unix seqpacket socket:

- ``spawn`` (with two pipe fds attached): fork a hardened worker on those pipes
- ``kill``: SIGKILL a worker, reap it, and say how it ended
- ``discard``: the same, without a reply
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import socket
import sys


def _probe(spec: dict, uid: int | None, ruleset_fd: int | None) -> dict:
    """Harden a throw-away child and check from inside that the layers bite."""
    from sandbox import worker

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        report: dict = {}
        try:
            report["layers"] = worker.harden(spec, uid=uid, ruleset_fd=ruleset_fd, keep_fds=(w,))
            if "seccomp" in report["layers"]:
                try:
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
                    report["error"] = "seccomp is loaded but socket() still works"
                except OSError:
                    pass
            if "landlock" in report["layers"]:
                try:
                    with open("/proc/self/status", "rb"):
                        report["error"] = "Landlock is enforced but /proc can still be read"
                except OSError:
                    pass
        except BaseException as e:  # report any failure, never raise in a fork child
            report["error"] = f"{type(e).__name__}: {e}"
        os.write(w, json.dumps(report).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    try:
        return json.loads(data or b"{}")
    except ValueError:
        return {"error": "the probe child died"}


def main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    ctrl = socket.socket(fileno=spec["ctrl_fd"])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the trusted process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from sandbox import landlock, seccomp, worker

    optional = worker.preload()
    errors: dict[str, str] = {}

    uid_base = None
    if os.geteuid() == 0:
        uid_base = spec["uid_base"]
    if spec.get("seccomp"):
        if seccomp.supported_arch() is None:
            errors["seccomp"] = f"no syscall table for this architecture ({os.uname().machine})"
            spec["seccomp"] = False
    ruleset_fd = None
    if spec.get("landlock"):
        try:
            ruleset_fd, abi = landlock.create_ruleset(spec["read_paths"])
        except OSError as e:
            errors["landlock"] = f"Landlock unavailable: {e}"
            spec["landlock"] = False

    report = _probe(spec, uid_base, ruleset_fd)
    if "error" in report:
        # Retry without the layer that failed, one at a time, so the trusted
        # side learns what does work and can decide whether it is enough.
        for layer in ("seccomp", "landlock"):
            if spec.get(layer):
                trial = dict(spec, **{layer: False})
                rep = _probe(trial, uid_base, ruleset_fd if trial.get("landlock") else None)
                if "error" not in rep:
                    errors[layer] = report["error"]
                    spec = trial
                    report = rep
                    break
    layers = report.get("layers", [])
    if uid_base is not None and "uid" not in layers:
        uid_base = None
    if not spec.get("landlock") and ruleset_fd is not None:
        os.close(ruleset_fd)
        ruleset_fd = None
    hello = {"layers": layers, "errors": errors, "optional": optional, "fatal": report.get("error")}
    # Keep the heap out of the collector's reach: forks then copy fewer pages.
    gc.freeze()
    ctrl.sendall(json.dumps(hello).encode())
    devnull = os.open("/dev/null", os.O_WRONLY)
    os.dup2(devnull, 2)
    os.dup2(devnull, 1)

    workers: set[int] = set()
    try:
        while True:
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 65536, 2)
            if not msg:
                break
            cmd = json.loads(msg)
            op = cmd.get("op")
            if op == "spawn":
                if len(fds) != 2:
                    for fd in fds:
                        os.close(fd)
                    ctrl.sendall(b'{"error": "spawn needs two fds"}')
                    continue
                uid = None if uid_base is None else uid_base + int(cmd["uid_offset"])
                pid = os.fork()
                if pid == 0:
                    ctrl.close()
                    worker.main(spec, fds[0], fds[1], uid=uid, ruleset_fd=ruleset_fd, once=bool(cmd.get("once")))
                for fd in fds:
                    os.close(fd)
                workers.add(pid)
                ctrl.sendall(json.dumps({"pid": pid}).encode())
            elif op in ("kill", "discard"):
                # discard: the same without a reply, for workers whose end
                # status nobody needs; the trusted side does not wait for it.
                pid = int(cmd["pid"])
                if pid not in workers:
                    if op == "kill":
                        ctrl.sendall(b'{"status": "unknown worker"}')
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status = os.waitpid(pid, 0)
                workers.discard(pid)
                if op == "kill":
                    ctrl.sendall(json.dumps({"status": worker.describe_status(status)}).encode())
            else:
                for fd in fds:
                    os.close(fd)
                ctrl.sendall(b'{"error": "unknown op"}')
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    sys.exit(0)
