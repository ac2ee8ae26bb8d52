"""`arcsynth verify`: the real sandbox on real ARC tasks, through the real CLI app."""

from __future__ import annotations

import json

ROT180 = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n"


def _write(tmp_path, source: str):
    path = tmp_path / "program.py"
    path.write_text(source, encoding="utf-8")
    return path


def test_json_is_one_document_with_the_verdicts(cli_app, runner, tmp_path):
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, ROT180)), "-d", "arc1:train", "-t", "3c9b0459", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["all_train_pass"] is True
    assert [v["status"] for v in doc["train"]] == ["pass"] * 4
    # Test answers are known for the public set, so the test output is checked too.
    assert [v["status"] for v in doc["test"]] == ["pass"]
    assert {"process", "rlimits", "seccomp"} <= set(doc["isolation"])


def test_a_near_miss_fails_with_the_right_diff_figures(cli_app, runner, tmp_path):
    # Right shape, one cell forced wrong: 8 of 9 cells of a 3x3 output.
    near = "import numpy as np\n\ndef transform(grid):\n    out = np.rot90(grid, 2).copy()\n    out[0, 0] = (out[0, 0] + 1) % 10\n    return out\n"
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, near)), "-d", "arc1:train", "-t", "3c9b0459", "--json"])
    assert result.exit_code == 1, result.output  # some pair fails
    doc = json.loads(result.stdout)
    assert doc["all_train_pass"] is False
    assert {v["status"] for v in doc["train"]} == {"wrong"}
    assert all(v["shape_match"] and abs(v["cell_accuracy"] - 8 / 9) < 1e-9 for v in doc["train"])


def test_an_error_exits_one_and_reports_the_error(cli_app, runner, tmp_path):
    bad = "def transform(grid):\n    return grid[100]\n"
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, bad)), "-d", "arc1:train", "-t", "3c9b0459", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["train"][0]["status"] == "error"
    assert doc["train"][0]["error_type"] == "IndexError"


def test_human_output_names_each_pair(cli_app, runner, tmp_path):
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, ROT180)), "-d", "arc1:train", "-t", "3c9b0459"])
    assert result.exit_code == 0, result.output
    assert "train 3" in result.stdout and "all train pairs pass" in result.stdout


def test_bad_input_exits_2_with_a_clear_message(cli_app, runner, tmp_path):
    prog = str(_write(tmp_path, ROT180))
    cases = [
        (["verify", str(tmp_path / "missing.py"), "-d", "arc1:train", "-t", "3c9b0459"], "cannot read program"),
        (["verify", prog, "-d", "arc9:train", "-t", "3c9b0459"], "arc9:train"),
        (["verify", prog, "-d", "arc1:train", "-t", "3c9b045"], "3c9b0459"),
    ]
    for args, needle in cases:
        result = runner.invoke(cli_app, args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output


def test_program_texts_are_shown_as_text_not_markup_or_escapes(cli_app, runner, tmp_path):
    # Rich markup and terminal escapes (window title, clear screen) in an error message.
    src = "def transform(grid):\n    raise ValueError('[/oops] \\x1b]0;pwned\\x07\\x1b[2J done')\n"
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, src)), "-d", "arc1:train", "-t", "3c9b0459"])
    assert result.exit_code == 1, result.output
    assert "[/oops]" in result.stdout and "pwned" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_a_crash_shows_its_type_once_and_the_line_it_happened_on(cli_app, runner, tmp_path):
    crash = "def helper(g):\n    return g[100]\n\ndef transform(grid):\n    return helper(grid)\n"
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, crash)), "-d", "arc1:train", "-t", "3c9b0459"])
    assert result.exit_code == 1, result.output
    out = " ".join(result.stdout.split())
    assert "IndexError at line 2: index 100 is out of bounds" in out
    assert "IndexError: IndexError" not in out


def test_wrong_pairs_show_expected_produced_and_diff_grids(cli_app, runner, tmp_path):
    # Mirrors each row: on 3c9b0459's first pair (2 2 1 / 2 1 2 / 2 8 1 -> rotated) rows 0 and 2 are wrong.
    mirror = "def transform(grid):\n    return [row[::-1] for row in grid]\n"
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, mirror)), "-d", "arc1:train", "-t", "3c9b0459"])
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "train 0: expected | produced | diff" in out
    block = out[out.index("train 0: expected"):].splitlines()
    assert block[1].split() == ["expected", "3x3", "produced", "3x3", "diff", "3x3"]
    expected, produced, diff = zip(*(line.split() for line in block[2:5]))
    assert list(expected) == ["182", "212", "122"]
    assert list(produced) == ["122", "212", "182"]
    assert list(diff) == ["1x2", "212", "1x2"]  # only the cells that differ are marked


def test_rows_returned_as_numpy_arrays_are_read_by_value(cli_app, runner, tmp_path):
    # The input is a numpy array: a list of its (reversed, rotated) rows is a valid grid.
    rows = "import numpy as np\n\ndef transform(grid):\n    return [row for row in np.rot90(grid, 2)]\n"
    result = runner.invoke(cli_app, ["verify", str(_write(tmp_path, rows)), "-d", "arc1:train", "-t", "3c9b0459", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["all_train_pass"] is True


def test_a_slow_correct_program_passes_with_a_larger_program_limit(cli_app, runner, tmp_path):
    # ~0.6 s of CPU per pair: over the default 2 s program limit on 5 pairs, within 30 s.
    slow = ("import time\nimport numpy as np\n\ndef transform(grid):\n    t = time.process_time()\n"
            "    while time.process_time() - t < 0.6:\n        pass\n    return np.rot90(grid, 2)\n")
    prog = str(_write(tmp_path, slow))
    base = ["verify", prog, "-d", "arc1:train", "-t", "3c9b0459", "--json", "--pair-timeout", "5"]
    r = runner.invoke(cli_app, base)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    failed = next(p for p in doc["train"] + doc["test"] if p["status"] == "timeout")
    assert "program limit" in failed["error"]
    r = runner.invoke(cli_app, base + ["--program-timeout", "30"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["all_train_pass"] is True
    r = runner.invoke(cli_app, base + ["--program-timeout", "0"])
    assert r.exit_code == 2 and "bad limit" in r.stderr
