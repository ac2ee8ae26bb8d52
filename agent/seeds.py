"""Per-request seeds derived from the run seed.

A request's seed depends only on (run seed, task id, round, request index), never on
the order in which tasks or requests happen to run, so concurrency and resumes do not
change what is sampled. SHA-256 rather than Python's ``hash()``, which is salted per
process for strings.
"""

from __future__ import annotations

import hashlib

SEED_BITS = 31
"""Seeds fit a signed 32-bit integer, which every backend (torch, numpy, vLLM, OpenAI-style
servers) accepts."""


def derive_seed(run_seed: int, task_id: str, round: int, index: int) -> int:
    """A seed in ``[0, 2**31)`` that is the same on every process, platform and Python version."""
    key = f"arcsynth-seed\x1f{int(run_seed)}\x1f{task_id}\x1f{int(round)}\x1f{int(index)}".encode()
    digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << SEED_BITS) - 1)
