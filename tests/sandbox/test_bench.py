"""The sandbox benchmark: its mixes are fixed, its real programs are correct, and it prints its figures."""

from __future__ import annotations

import asyncio
import re

import pytest

from sandbox.bench import REAL_SIZES, main, make_mix, make_real_mix, real_programs, real_task


def test_mix_is_fixed_and_uses_real_tasks():
    a = make_mix(50, 3, loops=True)
    b = make_mix(50, 3, loops=True)
    assert [(s, t.id) for s, t in a] == [(s, t.id) for s, t in b]
    assert len({t.id for _, t in a}) > 10
    assert not any("while True" in s for s, _ in make_mix(200, 0, loops=False))


def test_real_programs_look_like_real_solvers():
    progs = real_programs()
    assert 15 <= len(progs) <= 40
    sizes = sorted(len(s.encode()) for s in progs.values())
    assert sizes[0] >= 2 * 1024 and sizes[-1] <= 40 * 1024
    # Both size classes are well populated.
    for lo, hi in REAL_SIZES:
        assert sum(lo * 1024 <= n < hi * 1024 for n in sizes) >= 8
    sources = list(progs.values())
    assert all(re.search(r"^def transform\(grid\)", s, re.M) for s in sources)
    assert sum("def __init__" in s and "def __eq__" in s for s in sources) >= 10  # classes with dunder methods
    assert sum("@dataclass" in s for s in sources) >= 3
    closure = re.compile(r"^def \w+\(.*\n(?:(?:    .*)?\n)*?    def \w+\(|return lambda", re.M)  # a function made inside a function
    assert sum(bool(closure.search(s)) for s in sources) >= 10
    assert sum("import numpy" in s for s in sources) >= 3
    # Every program is named after a task of the corrected arc1 training set.
    assert all(real_task(name).id == name[:-3] for name in progs)


def test_real_mix_is_fixed_and_split_by_size():
    a = make_real_mix(40, 5, lo_kb=0, hi_kb=10)
    assert [(s, t.id) for s, t in a] == [(s, t.id) for s, t in make_real_mix(40, 5, lo_kb=0, hi_kb=10)]
    assert all(len(s.encode()) < 10 * 1024 for s, _ in a)
    assert all(len(s.encode()) >= 10 * 1024 for s, _ in make_real_mix(40, 5, lo_kb=10, hi_kb=40))
    with pytest.raises(ValueError, match="no bench program"):
        make_real_mix(3, 0, lo_kb=100, hi_kb=200)


@pytest.mark.asyncio(loop_scope="module")
async def test_every_real_program_passes_its_task_in_the_sandbox(sandbox):
    names = sorted(real_programs())
    progs = real_programs()
    verdicts = await asyncio.gather(*(sandbox.run(progs[n], real_task(n), check_test=True) for n in names))
    failed = {
        n: [(p.status, (p.error or "")[-200:]) for p in v.train + v.test if p.status != "pass"]
        for n, v in zip(names, verdicts)
        if not (v.all_train_pass and all(p.status == "pass" for p in v.test))
    }
    assert not failed, failed


def test_bench_prints_each_mix_and_the_smallest_ratio_last(capsys):
    ratio = main(n=40, workers=2, seed=1, n_real=16)
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"sandbox/unprotected \d+\.\d\d", lines[-1])
    assert float(lines[-1].split()[-1]) == round(ratio, 2) and ratio > 0
    assert any(line.strip().startswith("(b) subprocess/candidate") for line in lines)
    mixes = [line for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert len(mixes) == 4 and sum(m.startswith("real correct programs") for m in mixes) == 2
    per_mix = [float(line.split()[-1]) for line in lines if line.strip().startswith("sandbox / unprotected")]
    assert len(per_mix) == 4 and round(min(per_mix), 2) == round(ratio, 2)
    # Every real program passes in both designs.
    real_c = [line for line in lines if "(c) arcsynth sandbox" in line][2:]
    assert all("(16 passed" in line for line in real_c), real_c
    # The floor follows the smaller real programs, and its bound is what its two figures give.
    floors = [line for line in lines if line.strip().startswith("floor:")]
    assert len(floors) == 1 and lines.index(mixes[2]) < lines.index(floors[0]) < lines.index(mixes[3])
    floor_ms, own_ms, bound = (float(x) for x in re.search(
        r"costs (\d+\.\d) core-ms .* take (\d+\.\d) core-ms .* at most (\d\.\d\d) here", floors[0]).groups())
    assert floor_ms > 0 and own_ms > 0
    assert abs(bound - own_ms / (floor_ms + own_ms)) < 0.03


def test_the_unprotected_baseline_runs_every_job_once_whatever_the_worker_count():
    # Work is handed out in small pieces as workers free up; every job must still run
    # exactly once, so the passes counted are the passing jobs, for any split.
    from arcsynth.datasets import load_dataset
    from sandbox.bench import SOLUTIONS, WRONG_SHAPE, run_unprotected

    task = load_dataset("arc1:train").get("c8f0f002")
    jobs = [(SOLUTIONS["c8f0f002"], task)] * 37 + [(WRONG_SHAPE, task)] * 26
    for workers in (1, 2, 3):
        _, passed = run_unprotected(jobs, workers, 0.5)
        assert passed == 37, workers


def test_the_unprotected_baseline_runs_with_one_blas_thread_as_the_sandbox_does(monkeypatch):
    import os

    from arcsynth.datasets import load_dataset
    from sandbox.bench import SOLUTIONS, run_unprotected

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    task = load_dataset("arc1:train").get("c8f0f002")
    # Right only where the worker's numpy was started with one BLAS thread.
    probe = "import os\n" + SOLUTIONS["c8f0f002"].replace(
        "    return out", "    return out if os.environ.get('OPENBLAS_NUM_THREADS') == '1' else out[:1]")
    _, passed = run_unprotected([(probe, task)] * 6, 2, 0.5)
    assert passed == 6
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"  # this process's setting is left as it was
