"""Hindsight relabelling: every verified program is a correct solution of the task it computes.

SOAR's self-improvement: a program that fails its task still maps each train input to
some output; paired with those outputs, the inputs make a task the program solves. Such
pairs are fine-tuning data a model could not otherwise get from its own failures.

Records follow the chat convention of TRL and Unsloth (``{"messages": [...]}``): the first
prompt arcsynth would build for the task, then the program as the assistant's reply.
What is kept:

- programs that pass every train pair of their task, as they are (``kind = "solved"``);
- other programs relabelled onto their own outputs (``kind = "relabelled"``), when they
  returned a grid for every train and test input;
- not programs that crash, time out or return an invalid grid on any input, nor ones
  that return every train input unchanged (the identity teaches nothing);
- one program per behaviour and task: programs with the same outputs everywhere are
  the same example.

The outputs come from the run's own verdicts (the trace); nothing is re-run here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from agent.config import load_config
from agent.trace import ProgramEvent, VerdictEvent, last_attempts, read_trace
from arcsynth.task import Task, task_from_json
from prompts import build_first_prompt


class HindsightError(ValueError):
    """A run directory that cannot be exported, with the reason."""


def _chars_div_4(messages: Any) -> int:
    return sum(len(m.content) for m in messages) // 4


def hindsight_records(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The fine-tuning records of one run, task by task in trace order."""
    cfg = None
    for task, sources, verdicts in _run_tasks(Path(run_dir)):
        cfg = cfg or load_config(Path(run_dir) / "config.toml")
        seen: set[str] = set()
        for v in verdicts:
            if v.program_id not in sources:
                continue
            record = _record(task, v, sources[v.program_id], cfg)
            if record is None:
                continue
            key = json.dumps(record["task"], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            yield record


def _run_tasks(run_dir: Path) -> Iterator[tuple[Task, dict[str, str], list[VerdictEvent]]]:
    """Per task of the run (its last attempt): the task, its programs' sources, its verdicts."""
    from arcsynth.datasets import DatasetError, load_dataset

    trace = run_dir / "trace.jsonl"
    if not trace.is_file():
        raise HindsightError(f"{run_dir} is not a run directory: it has no trace.jsonl")
    cfg = load_config(run_dir / "config.toml")
    try:
        dataset = load_dataset(cfg.data.dataset, lenient=True)
    except DatasetError as e:
        raise HindsightError(f"{run_dir}: its dataset {cfg.data.dataset!r} cannot be read: {e}") from None
    for task_id, events in last_attempts(read_trace(trace)).items():
        if task_id not in dataset:
            continue
        sources = {e.program_id: e.source for e in events if isinstance(e, ProgramEvent) and e.status == "ok" and e.source}
        yield dataset.get(task_id), sources, [e for e in events if isinstance(e, VerdictEvent)]


def library_records(run_dir: Path) -> Iterator[dict[str, Any]]:
    """One library record per task of the run that some program solved (passed every train
    pair): the task's train pairs and the shortest passing program (agent.library)."""
    from agent.library import library_record

    for task, sources, verdicts in _run_tasks(Path(run_dir)):
        passing = [v.program_id for v in verdicts if v.all_train_pass and v.program_id in sources]
        if passing:
            best = min(passing, key=lambda pid: (len(sources[pid]), pid))
            yield library_record(task, sources[best], best)


def _record(task: Task, v: VerdictEvent, source: str, cfg: Any) -> dict[str, Any] | None:
    outputs = [p.get("output") for p in v.train]
    tests = [p.get("output") for p in v.test]
    if any(o is None for o in outputs) or any(o is None for o in tests):
        return None  # crashed, timed out or returned no valid grid somewhere
    if all(o == pair.input.tolist() for o, pair in zip(outputs, task.train)):
        return None  # the identity
    solved = v.all_train_pass
    obj = {
        "train": [{"input": p.input.tolist(), "output": o} for p, o in zip(task.train, outputs)],
        "test": [{"input": p.input.tolist(), "output": o} for p, o in zip(task.test, tests)],
    }
    relabelled = task_from_json(obj, task.id)
    p = cfg.prompt
    prompt = build_first_prompt(
        relabelled, encoding=p.encoding, max_prompt_tokens=10**9, count_tokens=_chars_div_4,
        show_test_inputs=p.show_test_inputs, scipy_available=p.offer_scipy, observations=p.observations,
    )
    messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
    messages.append({"role": "assistant", "content": f"```python\n{source.strip()}\n```"})
    return {
        "messages": messages,
        "kind": "solved" if solved else "relabelled",
        "task_id": task.id,
        "program_id": v.program_id,
        "task": obj,
    }
