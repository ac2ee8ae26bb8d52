"""Request seeds: stable across processes, distinct across requests."""

from __future__ import annotations

import os
import subprocess
import sys

from agent.seeds import derive_seed


def test_seed_is_the_same_in_another_process():
    code = "from agent.seeds import derive_seed; print(derive_seed(3, '00576224', 1, 5))"
    env = {**os.environ, "PYTHONHASHSEED": "999"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert int(out.stdout) == derive_seed(3, "00576224", 1, 5)


def test_seeds_differ_by_every_input_and_fit_31_bits():
    base = derive_seed(0, "t", 0, 0)
    variants = [derive_seed(1, "t", 0, 0), derive_seed(0, "u", 0, 0), derive_seed(0, "t", 1, 0), derive_seed(0, "t", 0, 1)]
    assert base not in variants and len(set(variants)) == 4
    seeds = {derive_seed(0, f"task{i}", r, q) for i in range(20) for r in range(5) for q in range(10)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**31 for s in seeds)


def test_fields_do_not_run_together():
    # ("t1", round 2) and ("t", round 12) must not be the same key.
    assert derive_seed(0, "t1", 2, 0) != derive_seed(0, "t", 12, 0)
