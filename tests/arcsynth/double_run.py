"""A solve config against the pipeline server double, for the shard, merge and Ray tests.

The model is not under test there: the double (agent.benchmarks.server_double, a test double of
an OpenAI-compatible server) answers seeded requests with the same completions every
time, so two runs of one config over the same tasks must end with the same results,
whether one process solved them, N shards or the nodes of a Ray cluster.
"""

from __future__ import annotations

from pathlib import Path

from agent.rundir import compare_runs

TASKS = ["3c9b0459", "6150a2bd", "67a3c6ac", "74dd1130", "017c7c7b", "025d127b", "0520fde7"]
"""ARC-AGI-1 training tasks: four the double knows a solution of, three it does not."""


def write_config(path: Path, base_url: str, tasks: list[str] = TASKS) -> Path:
    ids = ", ".join(f'"{t}"' for t in tasks)
    path.write_text(f"""name = "double"
seed = 3
concurrency = 2
[data]
dataset = "arc1:train"
tasks = [{ids}]
[model]
backend = "openai"
model = "pipeline-double"
base_url = "{base_url}"
[sampling]
samples_per_prompt = 8
max_tokens = 512
[budget]
rounds = 2
first_prompts = 1
refine_prompts = 1
stop_after_passing = 1
[sandbox]
workers = 1
# Generous: a timeout caused by a loaded machine would make two runs differ.
pair_timeout_s = 10.0
candidate_timeout_s = 30.0
""")
    return path


def result_differences(a: Path, b: Path) -> list[str]:
    """compare_runs without the request latencies, which a live server never repeats."""
    return [d for d in compare_runs(a, b) if "differs at latency_s:" not in d]
