"""`arcsynth bench viewer`: open a large synthetic run through the run index; print time and memory.

A GPU run is up to 1,000 tasks x hundreds of programs. The generator writes such a
run directory (config, provenance, a version-2 trace with prompts by reference,
completions, programs as completion slices, verdicts with produced grids, votes,
attempts, results) quickly, without a model or a sandbox. Then, each in a fresh
process so the figures are honest: (1) the first open, which builds the index;
(2) the reopen with the index, which is what a viewer does every time: header,
task list and one task's details; (3) two searches, the first of which builds the
full-text table. Peak memory is the process's maximum RSS.
Targets: reopen < 2 s and < 500 MB. The last line is ``viewer open <seconds> s``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.trace import TRACE_VERSION, text_digest

SYSTEM = ("You are an expert at solving ARC-AGI puzzles by writing Python programs. Each puzzle shows example pairs "
          "of grids; every output grid is made from its input grid by the same hidden rule.\n\n")
CONTRACT = ("Write a Python program that follows this contract:\n- It defines `def transform(grid)`.\n- It returns the "
            "output grid as a 2-D numpy array or a list of lists of integers 0-9.\nAnswer with one ```python block.\n\n")


def _grid(rng: random.Random, h: int, w: int) -> list[list[int]]:
    return [[rng.randrange(10) for _ in range(w)] for _ in range(h)]


def _grid_text(g: list[list[int]]) -> str:
    return "\n".join(" ".join(map(str, row)) for row in g)


def generate(run_dir: Path, *, tasks: int, candidates: int, samples: int = 8, seed: int = 0) -> dict[str, int]:
    """Write a synthetic finished run of ``tasks`` tasks and ``candidates`` programs in all."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / "results").mkdir()
    (run_dir / "config.toml").write_text(
        'name = "synthetic"\nseed = 0\n\n[data]\ndataset = "synthetic"\n\n[model]\nbackend = "vllm"\nmodel = "synthetic-7b"\n')
    (run_dir / "provenance.json").write_text(json.dumps({"config_hash": "synthetic", "git": {"commit": "0" * 40, "dirty": False},
                                                         "model": {"backend": "vllm", "model_id": "synthetic-7b"}}))
    ids = [f"{i:08x}" for i in range(tasks)]
    per_task = [candidates // tasks + (1 if i < candidates % tasks else 0) for i in range(tasks)]
    t = 1.7e9
    dumps = json.dumps
    written_programs = 0
    with open(run_dir / "trace.jsonl", "w", encoding="utf-8", buffering=1 << 20) as f:
        w = f.write
        w(dumps({"v": TRACE_VERSION, "t": t, "event": "run_start", "run_id": run_dir.name, "config_hash": "synthetic",
                 "resumed": False, "task_ids": ids, "pid": None, "host": None}, separators=(",", ":")) + "\n")
        w(dumps({"v": TRACE_VERSION, "t": t, "event": "text", "digest": text_digest(SYSTEM), "text": SYSTEM}) + "\n")
        w(dumps({"v": TRACE_VERSION, "t": t, "event": "text", "digest": text_digest(CONTRACT), "text": CONTRACT}) + "\n")
        for ti, tid in enumerate(ids):
            h, wd = rng.randint(3, 12), rng.randint(3, 12)
            train = [(_grid(rng, h, wd), _grid(rng, h, wd)) for _ in range(3)]
            examples = [f"## Example {k + 1}\nInput ({h}x{wd}):\n{_grid_text(a)}\nOutput ({h}x{wd}):\n{_grid_text(b)}\n\n"
                        for k, (a, b) in enumerate(train)]
            w(f'{{"v":{TRACE_VERSION},"t":{t},"event":"task_start","task_id":"{tid}","n_train":3,"n_test":1}}\n')
            for ex in examples:
                w(dumps({"v": TRACE_VERSION, "t": t, "event": "text", "digest": text_digest(ex), "text": ex}) + "\n")
            n = per_task[ti]
            passing = 0
            wrong = [_grid(rng, h, wd) for _ in range(8)]  # produced grids (random per program would be slow)
            for r in range((n + samples - 1) // samples):
                rnd = 0 if r < 2 else 1 + (r - 2) // 4
                rid = f"{tid}/r{rnd}/q{r}"
                parents = [f"{tid}/r0/q0/c{rng.randrange(samples)}"] if rnd else []
                order = rng.sample(range(3), 3)
                parts = [{"ref": text_digest(SYSTEM)}, {"ref": text_digest(CONTRACT)}]
                user = [{"ref": text_digest(examples[k])} for k in order]
                if parents:
                    user.append(f"An earlier program got {rng.randrange(3)} of 3 examples right; wrong cells: {rng.randrange(40)}.\n\n")
                user.append("Write the program.")
                w(dumps({"v": TRACE_VERSION, "t": t, "event": "prompt", "task_id": tid, "request_id": rid, "round": rnd,
                         "kind": "refine" if parents else "first", "prompt_tokens": 900, "sampling": {"n": samples, "seed": r},
                         "parent_ids": parents, "shrink_steps": [],
                         "message_parts": [{"role": "system", "parts": parts[:1]}, {"role": "user", "parts": parts[1:] + user}]},
                        separators=(",", ":")) + "\n")
                for c in range(min(samples, n - r * samples)):
                    t += 0.01
                    pid = f"{rid}/c{c}"
                    k = rng.randrange(1000)
                    source = (f"import numpy as np\n\ndef transform(grid):\n    g = np.array(grid)\n"
                              f"    out = np.rot90(g, {k % 4})\n    out[out == {k % 10}] = {(k // 10) % 10}\n    return out.tolist()\n")
                    text = (f"The rule moves each object by {k % 5} cells and recolours colour {k % 10}; "
                            f"the background stays.\n```python\n{source}```\n")
                    w(dumps({"v": TRACE_VERSION, "t": t, "event": "completion", "task_id": tid, "request_id": rid, "index": c,
                             "text": text, "prompt_tokens": 900, "completion_tokens": 120, "finish_reason": "stop",
                             "latency_s": 2.5}, separators=(",", ":")) + "\n")
                    start = text.index(source)
                    status = "ok" if k % 10 else ("no_code" if k % 20 else "syntax_error")
                    ok = status == "ok"
                    w(dumps({"v": TRACE_VERSION, "t": t, "event": "program", "task_id": tid, "program_id": pid, "round": rnd,
                             "status": status, "detail": "", "program_hash": f"{k:016x}" if ok else None,
                             "duplicate_of": None, "parent_ids": parents,
                             "source_span": [start, start + len(source)] if ok else None}, separators=(",", ":")) + "\n")
                    written_programs += 1
                    if not ok:
                        continue
                    passes = k % 97 == 0
                    passing += passes
                    pairs = [{"status": "pass" if passes else "wrong", "output": b if passes else wrong[(k + j) % 8],
                              "expected_shape": [h, wd], "shape_match": True, "cell_accuracy": 1.0 if passes else 0.5,
                              "error_type": None, "error": None, "runtime_s": 0.001} for j, (_, b) in enumerate(train)]
                    w(dumps({"v": TRACE_VERSION, "t": t, "event": "verdict", "task_id": tid, "program_id": pid,
                             "all_train_pass": passes, "pairs_passed": 3 if passes else 0,
                             "train_accuracy": 1.0 if passes else 0.5, "train": pairs,
                             "test": [{"status": "unchecked", "output": wrong[k % 8]}], "isolation": ["seccomp"],
                             "rechecked": passes, "behaviour_duplicate_of": None}, separators=(",", ":")) + "\n")
            answer = _grid(rng, h, wd)
            w(dumps({"v": TRACE_VERSION, "t": t, "event": "vote", "task_id": tid, "test_index": 0,
                     "groups": [{"output": answer, "program_ids": [f"{tid}/r0/q0/c0"], "behaviours": 1, "weight": 1.0,
                                 "passing": passing > 0, "train_accuracy": 1.0, "shape_match": True, "pairs_passed": 3}]}) + "\n")
            w(dumps({"v": TRACE_VERSION, "t": t, "event": "attempts", "task_id": tid,
                     "attempts": [{"attempt_1": answer, "attempt_2": answer}], "sources": [["group 0", "group 0"]]}) + "\n")
            w(dumps({"v": TRACE_VERSION, "t": t, "event": "task_result", "task_id": tid, "solved_train": passing > 0,
                     "score": None, "n_programs": n, "n_passing": passing, "prompt_tokens": 900 * ((n + samples - 1) // samples),
                     "completion_tokens": 120 * n, "wall_s": 60.0, "stop_reason": "budget"}) + "\n")
        w(dumps({"v": TRACE_VERSION, "t": t, "event": "run_end", "summary": {"tasks_done": tasks}}) + "\n")
    return {"tasks": tasks, "programs": written_programs, "bytes": (run_dir / "trace.jsonl").stat().st_size}


_OPEN = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from viewer.index import RunIndex
t1 = time.perf_counter()
ix = RunIndex.open(sys.argv[1])
head = ix.header()
rows = ix.tasks()
t2 = time.perf_counter()
detail = ix.task(rows[len(rows) // 2].task_id)
t3 = time.perf_counter()
cand = ix.candidate(detail.task_id, detail.candidates[-1].program_id)
t4 = time.perf_counter()
n = ix.refresh()
t5 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "task_s": t3 - t2, "candidate_s": t4 - t3, "refresh_s": t5 - t4,
                  "read_at_open": ix.read_at_open, "tasks": len(rows), "programs": head.programs,
                  "candidates_in_task": len(detail.candidates), "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


_SEARCH = r"""
import json, resource, sys, time
from viewer.index import RunIndex
ix = RunIndex.open(sys.argv[1])
t0 = time.perf_counter()
first = ix.search("np.rot90(g, 3)")
t1 = time.perf_counter()
again = ix.search("recolours colour 7")
t2 = time.perf_counter()
print(json.dumps({"first_s": t1 - t0, "again_s": t2 - t1, "hits": len(first) + len(again),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


_APP = r"""
import asyncio, json, resource, sys, time
t0 = time.perf_counter()
from textual.widgets import DataTable
from viewer.app import TaskScreen, ViewerApp
t1 = time.perf_counter()

async def main():
    app = ViewerApp(sys.argv[1])
    async with app.run_test(size=(160, 50)) as pilot:
        while not app.screen.query(DataTable) or app.screen.query_one(DataTable).row_count == 0:
            await pilot.pause(0.01)
        t2 = time.perf_counter()
        rows = app.ix.tasks()
        app.push_screen(TaskScreen(rows[len(rows) // 2].task_id))
        await pilot.pause()
        while not isinstance(app.screen, TaskScreen) or app.screen.program_id is None:
            await pilot.pause(0.01)
        t3 = time.perf_counter()
        return t2, t3, len(app.ix.task(rows[len(rows) // 2].task_id).candidates)

t2, t3, n = asyncio.run(main())
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "task_s": t3 - t2, "candidates_in_task": n,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _measure(run_dir: Path, script: str = _OPEN) -> dict[str, float]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"opening {run_dir} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(*, tasks: int, candidates: int, directory: Path | None, keep: bool) -> float:
    """Generate, build, reopen, open in the viewer; print the figures; return the viewer's open time in seconds."""
    owned = directory is None
    base = Path(tempfile.mkdtemp(prefix="arcsynth-bench-viewer-")) if owned else directory
    run_dir = base / "synthetic-run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    try:
        t0 = time.perf_counter()
        info = generate(run_dir, tasks=tasks, candidates=candidates)
        gen_s = time.perf_counter() - t0
        print(f"generated {info['tasks']:,} tasks, {info['programs']:,} candidates, trace {info['bytes'] / 1e6:,.0f} MB "
              f"({info['bytes'] / max(1, info['programs']):,.0f} bytes per candidate) in {gen_s:.1f} s", flush=True)
        first = _measure(run_dir)
        index_mb = (run_dir / "index.sqlite").stat().st_size / 1e6
        print(f"first open (builds the index): {first['open_s']:.2f} s, peak memory {first['maxrss_mb']:.0f} MB, "
              f"index {index_mb:,.0f} MB", flush=True)
        again = _measure(run_dir)
        if again["read_at_open"]:
            raise RuntimeError("the reopen rebuilt the index")
        print(f"reopen with the index: header + task list {again['open_s']:.3f} s (imports {again['import_s']:.2f} s more), "
              f"one task of {again['candidates_in_task']} candidates {again['task_s']:.3f} s, "
              f"one candidate {again['candidate_s'] * 1000:.1f} ms, refresh with nothing new {again['refresh_s'] * 1000:.2f} ms, "
              f"peak memory {again['maxrss_mb']:.0f} MB")
        found = _measure(run_dir, _SEARCH)
        print(f"search: the first builds the full-text table in {found['first_s']:.2f} s, the next takes "
              f"{found['again_s'] * 1000:.0f} ms ({found['hits']} hits), peak memory {found['maxrss_mb']:.0f} MB")
        app = _measure(run_dir, _APP)
        print(f"interactive viewer (Textual, headless): run screen with its task list {app['open_s']:.2f} s "
              f"(imports {app['import_s']:.2f} s more), a task screen of {app['candidates_in_task']} candidates "
              f"{app['task_s']:.2f} s, peak memory {app['maxrss_mb']:.0f} MB")
        worst_mb = max(again["maxrss_mb"], app["maxrss_mb"])
        print(f"targets: open < 2 s ({'met' if app['open_s'] < 2 else 'MISSED'}), "
              f"< 500 MB ({'met' if worst_mb < 500 else 'MISSED'})")
        print(f"viewer open {app['open_s']:.3f} s")
        return app["open_s"]
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            if owned:
                shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {run_dir}", file=sys.stderr)
