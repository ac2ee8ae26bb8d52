"""A hardened executor for candidate ARC programs.

``Sandbox`` runs ``transform(grid)`` programs in a pool of long-lived worker
processes, each confined by the strongest layers this machine offers (see
``sandbox.layers``), and compares their outputs in the trusted process.

The public names are loaded on first use, so the sandbox host process, which
imports this package, loads only the worker-side modules.
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
