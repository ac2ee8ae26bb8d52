"""Sandbox settings and the error raised when the sandbox cannot run safely."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Defaults come from the sandbox benchmark (sandbox/bench.py) on real ARC tasks:
# realistic programs, pure-Python flood fills included, finish a pair in well under
# 50 ms, so 0.5 s leaves a 10x margin for a loaded machine, while each infinite loop
# (a few percent of model output) costs a whole pair limit of one core; at 0.5 s and
# 2% loops that is 10 ms per candidate, already several times the cost of an
# ordinary candidate, so a longer limit would mostly buy slower loops.
DEFAULT_PAIR_TIMEOUT_S = 0.5
# Ten pairs (a large ARC task, test inputs included) at a typical 0.1 s each fit;
# a program that is slow on every pair is cut off at 2 s instead of 10 x 0.5 s.
DEFAULT_CANDIDATE_TIMEOUT_S = 2.0


class SandboxUnavailable(RuntimeError):
    """The machine lacks the isolation layers the sandbox needs; the message says which and how to opt out."""


class SandboxConfig(BaseModel):
    """How candidate programs are run."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(0, ge=0, description="Worker processes running programs in parallel; 0 = os.cpu_count().")
    pair_timeout_s: float = Field(
        DEFAULT_PAIR_TIMEOUT_S, gt=0, description="Wall-clock limit for one pair (one call of transform), in seconds."
    )
    candidate_timeout_s: float = Field(
        DEFAULT_CANDIDATE_TIMEOUT_S,
        gt=0,
        description="Wall-clock limit for one program on all pairs of a task (train and test), in seconds.",
    )
    memory_mb: int = Field(1024, ge=256, description="Address-space limit of each worker process, in MiB.")
    bubblewrap: bool = Field(
        True, description="Run the workers inside bubblewrap (new network, pid, ipc, uts and mount namespaces) when bwrap works here."
    )
    recheck_passes: bool = Field(
        True,
        description="Re-run every program that passes all train pairs in a freshly forked process, so an earlier "
        "program cannot have tampered with the worker that passed it.",
    )
    unsafe: bool = Field(
        False,
        description="Run even when the minimum isolation (process, rlimits, seccomp, and Landlock or bubblewrap) "
        "is not available. Only for programs you would run on this machine yourself.",
    )
