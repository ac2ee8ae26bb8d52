"""What isolation this machine offers, how the host process is launched, and the minimum we accept.

Layer names reported in every verdict:

- ``process``: programs run in worker processes, never in the trusted process
- ``clean-env``: the workers' environment holds none of the caller's variables
- ``rlimits``: address space, CPU time, open files, file size 0, no new processes
- ``uid``: each worker runs as its own unprivileged uid (only when started as root)
- ``landlock``: read-only access to the Python libraries, nothing else; no TCP
- ``seccomp``: no sockets, exec, fork/threads, signals to others, file writes
- ``bwrap``: bubblewrap namespaces (network, pid, ipc, uts, mount with only the
  Python libraries mounted, a private /tmp)
- ``unsafe``: the minimum below was not met and the caller asked to run anyway
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import sysconfig

# Without seccomp a program can open sockets and start processes; without
# Landlock or a mount namespace it can read any file the user can (keys, the
# parent's /proc/<pid>/environ). rlimits keep memory and processes bounded.
MINIMUM = ("process", "rlimits", "seccomp", ("landlock", "bwrap"))
KNOWN_LAYERS = ("process", "clean-env", "rlimits", "uid", "landlock", "seccomp", "bwrap", "unsafe")
UID_BASE = 60000

# The host's environment: nothing from the caller (API keys, tokens), and single
# threaded BLAS so a worker never tries to start threads that seccomp forbids.
CLEAN_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}



def host_env() -> dict[str, str]:
    """CLEAN_ENV, plus the library search path when the interpreter needs one to start.

    LD_LIBRARY_PATH names directories, not secrets, and a Python built with
    shared libraries outside the system paths does not start without it.
    """
    env = dict(CLEAN_ENV)
    if os.environ.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


def _ld_library_dirs() -> list[str]:
    return [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d and os.path.isdir(d)]


# Imports only the worker-side modules (sandbox/__init__ loads nothing eagerly).
_BOOT = "import os, sys; sys.path[:0] = sys.argv[1].split(os.pathsep); from sandbox.host import main; main(sys.argv[2])"


def missing(layers: list[str]) -> list[str]:
    """The parts of MINIMUM absent from ``layers``, as human-readable names."""
    out = []
    for need in MINIMUM:
        if isinstance(need, tuple):
            if not any(n in layers for n in need):
                out.append(" or ".join(need))
        elif need not in layers:
            out.append(need)
    return out


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_paths() -> list[str]:
    """Directories the host must have on sys.path: this package's parent, numpy's and scipy's."""
    paths = [_package_parent()]
    for mod in ("numpy", "scipy"):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        d = os.path.dirname(os.path.dirname(os.path.abspath(m.__file__)))
        if d not in paths:
            paths.append(d)
    return paths


def library_paths() -> list[str]:
    """Read-only paths the workers may see: the standard library and site-packages."""
    cands = []
    for scheme_path in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(scheme_path)
        if p:
            cands.append(p)
    cands += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    cands += import_paths()[1:]
    return _existing_dirs(cands)


def _existing_dirs(paths: list[str]) -> list[str]:
    """The paths that are directories, each also by its real path, without repeats, in order."""
    out: list[str] = []
    for p in paths:
        for q in (p, os.path.realpath(p)):
            if os.path.isdir(q) and q not in out:
                out.append(q)
    return out


def interpreter_paths() -> list[str]:
    """What bubblewrap must mount for the interpreter to start: prefixes and the binary."""
    cands = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    cands.append(os.path.dirname(os.path.realpath(sys.executable)))
    cands.append(os.path.dirname(os.path.abspath(sys.executable)))
    cands += library_paths()
    # The host imports this package before any fork; under bubblewrap without
    # Landlock the workers can read it too (it is public code, and the only
    # part of the project mounted).
    cands.append(os.path.join(_package_parent(), "sandbox"))
    cands += _ld_library_dirs()
    return _existing_dirs(cands)


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path=os.environ.get("PATH", "") + ":/usr/bin:/bin")


def bwrap_argv(bwrap: str) -> list[str]:
    """bubblewrap with a root that holds only the system libraries and the interpreter.

    Not ``--ro-bind / /``: that would show the project's files and the home
    directory to the programs; here they do not exist.
    """
    argv = [
        bwrap,
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr",
    ]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/alternatives", "/etc/localtime"):
        argv += ["--ro-bind-try", f, f]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    paths = sorted(p for p in interpreter_paths() if not p.startswith("/usr/"))
    bound: list[str] = []
    for p in paths:  # sorted, so a parent comes before what it contains
        if not any(p == b or p.startswith(b + "/") for b in bound):
            bound.append(p)
            argv += ["--ro-bind", p, p]
    argv += ["--chdir", "/", "--"]
    return argv


def host_argv(spec_json: str) -> list[str]:
    return [sys.executable, "-I", "-c", _BOOT, os.pathsep.join(import_paths()), spec_json]
