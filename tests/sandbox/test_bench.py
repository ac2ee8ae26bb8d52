"""The sandbox benchmark runs end to end on a small sample and prints its figures."""

from __future__ import annotations

import re

from sandbox.bench import main, make_mix


def test_mix_is_fixed_and_uses_real_tasks():
    a = make_mix(50, 3, loops=True)
    b = make_mix(50, 3, loops=True)
    assert [(s, t.id) for s, t in a] == [(s, t.id) for s, t in b]
    assert len({t.id for _, t in a}) > 10
    assert not any("while True" in s for s, _ in make_mix(200, 0, loops=False))


def test_bench_prints_the_ratio_last(capsys):
    ratio = main(n=60, workers=2, seed=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"sandbox/unprotected \d+\.\d\d", lines[-1])
    assert float(lines[-1].split()[-1]) == round(ratio, 2) and ratio > 0
    assert any(line.strip().startswith("(b) subprocess/candidate") for line in lines)
