"""Trace bytes per program: format 1 (whole messages and sources in every event) vs format 2.

Records a long run with the scripted model (tests/agent/scripted_backend.py, a test double:
the model is not what is measured) and the real prompts, sandbox and loop, then writes
the same events as format 1 did (every event whole, ``model_dump_json``) and compares
with the format-2 trace the run wrote. Last line: ``trace bytes per program v1 <a> v2 <b>``.

    python benchmarks/trace_bytes.py [--tasks 12] [--rounds 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "agent")]

from agent.trace import ProgramEvent, PromptEvent, read_trace  # noqa: E402
from recorded_run import SMALL_TASKS, make_scripted_run, source_config  # noqa: E402

V2_ONLY = {"message_parts", "source_span", "task_ids", "pid", "host"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=12, help="ARC-AGI-1 eval tasks (the smallest first), at most 12")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per task (round 0 samples, later rounds refine)")
    args = ap.parse_args()
    ids = SMALL_TASKS[: args.tasks]
    cfg = source_config(ids, **{
        "budget.rounds": args.rounds, "budget.first_prompts": 2, "budget.refine_prompts": 3,
        "budget.stop_after_passing": 1000, "sampling.samples_per_prompt": 4, "prompt.parents_per_prompt": 2,
    })
    with tempfile.TemporaryDirectory() as tmp:
        run = make_scripted_run(Path(tmp) / "run", ids, cfg)
        trace = run / "trace.jsonl"
        v2 = trace.stat().st_size
        events = list(read_trace(trace))
        v1 = sum(len(ev.model_dump_json(exclude=V2_ONLY).replace('"v":2', '"v":1', 1)) + 1 for ev in events)
        programs = sum(isinstance(ev, ProgramEvent) for ev in events)
        prompts = [ev for ev in events if isinstance(ev, PromptEvent)]
        prompt_v1 = sum(len(ev.model_dump_json(exclude=V2_ONLY)) + 1 for ev in prompts)
        prompt_v2 = sum(len(line) + 1 for line in trace.read_text().splitlines()
                        if '"event":"prompt"' in line or '"event":"text"' in line)
    print(f"{len(ids)} tasks, {args.rounds} rounds, {len(prompts)} prompts, {programs} programs")
    print(f"prompts (and their texts): v1 {prompt_v1:,} bytes, v2 {prompt_v2:,} bytes ({prompt_v1 / prompt_v2:.1f}x less)")
    print(f"whole trace: v1 {v1:,} bytes, v2 {v2:,} bytes ({v1 / v2:.2f}x less)")
    print(f"trace bytes per program v1 {v1 / programs:,.0f} v2 {v2 / programs:,.0f}")


if __name__ == "__main__":
    main()
