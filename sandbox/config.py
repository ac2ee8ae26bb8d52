"""Sandbox settings and the error raised when the sandbox cannot run safely."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Defaults from the sandbox benchmark's program mix on real ARC tasks (2 workers):
# pair runtimes were p50 0.02 ms, p99 ~1 ms, max ~25 ms (a pure-Python flood fill
# on a 30x30 grid on a loaded machine). Every infinite loop costs one worker
# (1 + FLUSH_FRACTION) x the pair limit, and on a mix with 1.7% loops that
# dominates throughput: 182 candidates/s at 0.25 s, 125/s at 0.5 s, 77/s at 1 s.
# 0.5 s keeps a 20x margin over the slowest realistic program for a GPU box whose
# CPUs are also busy serving a model; use 0.25 s for more throughput.
DEFAULT_PAIR_TIMEOUT_S = 0.5
# A task has up to ~10 pairs (train and test); at the pair limit on each that
# would be 5 s of one core for a program that is merely slow everywhere.
DEFAULT_CANDIDATE_TIMEOUT_S = 2.0
# The limits count the program's own CPU time, which a loaded machine does not
# stretch. Wall-clock time only backs them up, for a program that sleeps or
# blocks instead of computing: this many times the limit, generous enough that
# a machine with several busy processes per core never reaches it for a
# program within its CPU limit.
WALL_BACKSTOP_FACTOR = 10.0


class SandboxUnavailable(RuntimeError):
    """The machine lacks the isolation layers the sandbox needs; the message says which and how to opt out."""


class SandboxConfig(BaseModel):
    """How candidate programs are run."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(0, ge=0, description="Worker processes running programs in parallel; 0 = os.cpu_count().")
    pair_timeout_s: float = Field(
        DEFAULT_PAIR_TIMEOUT_S, gt=0,
        description="CPU-time limit for one pair (one call of transform), in seconds; a wall-clock backstop of "
        "10x ends a program that sleeps or blocks.",
    )
    candidate_timeout_s: float = Field(
        DEFAULT_CANDIDATE_TIMEOUT_S,
        gt=0,
        description="CPU-time limit for one program on all pairs of a task (train and test, compiling included), "
        "in seconds; a wall-clock backstop of 10x ends a program that sleeps or blocks.",
    )
    cell_timeout_s: float = Field(
        5.0, gt=0,
        description="CPU-time limit for one REPL cell (search.mode 'repl'), in seconds, the re-run of its "
        "conversation's earlier cells included; a wall-clock backstop of 10x ends a cell that sleeps or blocks.",
    )
    memory_mb: int = Field(1024, ge=256, description="Address-space limit of each worker process, in MiB.")
    bubblewrap: bool = Field(
        True, description="Run the workers inside bubblewrap (new network, pid, ipc, uts and mount namespaces) when bwrap works here."
    )
    unsafe: bool = Field(
        False,
        description="Run even when the minimum isolation (process, rlimits, seccomp, and Landlock or bubblewrap) "
        "is not available. Only for programs you would run on this machine yourself.",
    )
