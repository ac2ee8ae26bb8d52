"""A hardened executor for candidate ARC programs.

``Sandbox`` runs ``transform(grid)`` programs in a pool of long-lived worker
processes and compares their outputs in the trusted process::

    async with Sandbox(SandboxConfig()) as sb:
        verdict = await sb.run(source, task)

How it is built (details in each module):

- ``host``: a forking parent started once with a clean environment (inside
  bubblewrap when it works here), numpy and scipy.ndimage preloaded;
- ``worker``: each worker slot is a zygote that never runs candidate code; it
  forks one fresh child per program from its clean state, which hardens itself
  (rlimits, its own uid when started as root, Landlock, seccomp) and runs that
  program only; the zygote re-encodes the child's results;
- ``protocol``: source and input grids go in, one small binary frame per pair
  comes out; no pickle, expected outputs never leave the trusted process;
- ``pool`` / ``verify``: time limits, worker replacement, verdicts.

Minimum isolation (``layers.MINIMUM``): process, rlimits, seccomp, and Landlock
or bubblewrap; without it ``start`` raises ``SandboxUnavailable`` unless
``SandboxConfig(unsafe=True)``. Every verdict lists the layers that were active.

The public names are loaded on first use, so the host process, which imports
this package, loads only the worker-side modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailable",
    "SandboxError",
    "PairVerdict",
    "CandidateVerdict",
    "verify_program",
]

_WHERE = {
    "Sandbox": "sandbox.verify",
    "verify_program": "sandbox.verify",
    "SandboxConfig": "sandbox.config",
    "SandboxUnavailable": "sandbox.config",
    "SandboxError": "sandbox.pool",
    "PairVerdict": "sandbox.verdict",
    "CandidateVerdict": "sandbox.verdict",
}

if TYPE_CHECKING:
    from sandbox.config import SandboxConfig, SandboxUnavailable
    from sandbox.pool import SandboxError
    from sandbox.verdict import CandidateVerdict, PairVerdict
    from sandbox.verify import Sandbox, verify_program


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
