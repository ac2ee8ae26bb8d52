"""`arcsynth bench viewer` end to end on a tiny synthetic run (figures, not a timed test)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_viewer_prints_its_figures_and_the_headline_last(tmp_path):
    r = subprocess.run([sys.executable, "-m", "arcsynth", "bench", "viewer", "--tasks", "6", "--candidates", "300",
                        "--dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"viewer open \d+\.\d{3} s", lines[-1])
    assert any(line.startswith("interactive viewer (Textual, headless): run screen") for line in lines)
    assert any(line.startswith("reopen with the index") for line in lines)
    assert not (tmp_path / "synthetic-run").exists()  # removed unless --keep
