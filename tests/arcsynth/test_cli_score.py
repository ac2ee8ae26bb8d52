from __future__ import annotations

import json

import pytest
import typer.main

from arcsynth.datasets import load_dataset
from arcsynth.grid import grid_to_list

COLOUR_ENV = {"FORCE_COLOR": "1", "COLORTERM": "truecolor", "TERM": "xterm-256color", "NO_COLOR": None, "COLUMNS": "160"}


@pytest.fixture
def kaggle_files(tmp_path, small_task, write_json):
    """Kaggle-style challenges + solutions: t1 has one test input, t2 has two."""
    write_json(tmp_path / "x_challenges.json", {"t1": small_task(with_test_output=False), "t2": small_task(n_test=2, with_test_output=False)})
    write_json(tmp_path / "x_solutions.json", {"t1": [[[1, 2, 3]]], "t2": [[[1, 2, 3]], [[2, 3, 4]]]})
    return tmp_path / "x_challenges.json"


def _att(a, b):
    return {"attempt_1": a, "attempt_2": b}


def test_score_plain_per_task_and_total(cli_app, runner, tmp_path, kaggle_files, write_json):
    sub = write_json(tmp_path / "submission.json", {"t2": [_att([[0]], [[1, 2, 3]]), _att([[0]], [[0]])]})
    r = runner.invoke(cli_app, ["score", str(sub), "--dataset", str(kaggle_files)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    # Only the submitted task has a row; the missing one is counted in the total line.
    assert lines[0] == "t2  1/2  0.500"
    assert lines[1].startswith(f"score 0.2500 (0.5 of 2 tasks) on {kaggle_files}")
    assert "test outputs 1/3" in lines[1] and "1 task missing" in lines[1] and "--show-missing" in lines[1]
    assert "0 tasks fully solved" in lines[1]

    r = runner.invoke(cli_app, ["score", str(sub), "--dataset", str(kaggle_files), "--show-missing"])
    assert r.stdout.splitlines()[:2] == ["t1  0/1  0.000  missing", "t2  1/2  0.500"]


def test_two_submitted_tasks_of_400_print_two_rows(cli_app, runner, tmp_path, write_json):
    ds = load_dataset("arc1:eval")
    a, b = ds.ids[:2]
    sub = {t: [_att(grid_to_list(p.output), [[0]]) for p in ds.get(t).test] for t in (a, b)}
    r = runner.invoke(cli_app, ["score", str(write_json(tmp_path / "s.json", sub)), "-d", "arc1:eval"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[:-1]] == [a, b]
    assert "(2 of 400 tasks)" in lines[-1] and "398 tasks missing" in lines[-1]


def test_a_wrong_attempts_count_names_the_submission_file(cli_app, runner, tmp_path, write_json):
    ds = load_dataset("arc1:eval")
    one = [t for t in ds if len(t.test) == 1][0]
    sub = write_json(tmp_path / "sub.json", {one.id: [_att([[0]], [[0]]), _att([[0]], [[0]])]})
    r = runner.invoke(cli_app, ["score", str(sub), "-d", "arc1:eval"])
    assert r.exit_code == 2
    assert str(sub) in r.stderr and one.id in r.stderr and "2 attempts entries" in r.stderr


def test_score_json_on_real_arc1_eval(cli_app, runner, tmp_path, write_json):
    ds = load_dataset("arc1:eval")
    two = [t for t in ds if len(t.test) == 2][0]
    sub = {
        "00576224": [_att([[0]], grid_to_list(ds.get("00576224").test[0].output))],
        two.id: [_att(grid_to_list(two.test[0].output), [[0]]), _att([[0]], [[0]])],
    }
    p = write_json(tmp_path / "submission.json", sub)
    r = runner.invoke(cli_app, ["score", str(p), "-d", "arc1:eval", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["total"] == 1.5 and rep["score"] == 1.5 / 400
    assert rep["n_tasks"] == 400 and len(rep["missing"]) == 398
    by_id = {t["task_id"]: t for t in rep["tasks"]}
    assert by_id[two.id]["solved"] == [True, False]


def test_score_table_on_a_terminal(cli_app, runner, tmp_path, kaggle_files, write_json):
    sub = write_json(tmp_path / "submission.json", {"t1": [_att([[1, 2, 3]], [[0]])]})
    r = runner.invoke(cli_app, ["score", str(sub), "-d", str(kaggle_files)], env=COLOUR_ENV)
    assert r.exit_code == 0, r.output
    assert "score 0.5000" in r.stdout and "┃" in r.stdout and "missing" in r.stdout


def test_unknown_submission_tasks_are_a_warning(cli_app, runner, tmp_path, kaggle_files, write_json):
    sub = write_json(tmp_path / "submission.json", {"t1": [_att([[1, 2, 3]], [[0]])], "zzz": [_att([[0]], [[0]])]})
    r = runner.invoke(cli_app, ["score", str(sub), "-d", str(kaggle_files)])
    assert r.exit_code == 0
    assert "warning: 1 task(s) in the submission are not in" in r.stderr and "zzz" in r.stderr


@pytest.mark.parametrize(
    "content, fragments",
    [
        ('{"t1": [{"attempt_1": [[1]]}]}', ["task t1", "test 0", "attempt_2", "missing"]),
        ('{"t1": [{"attempt_1": [[1]], "attempt_2": [[1], [1, 1]]}]}', ["task t1", "test 0", "attempt_2", "not rectangular"]),
        ('{"t1": [', ["invalid JSON at line 1"]),
        ('{"t1": "x"}', ["task t1", "expected a list"]),
    ],
)
def test_malformed_submission_exits_2(cli_app, runner, tmp_path, kaggle_files, content, fragments):
    p = tmp_path / "submission.json"
    p.write_text(content)
    r = runner.invoke(cli_app, ["score", str(p), "-d", str(kaggle_files)])
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    assert r.stderr.startswith(f"error: {p}")
    for f in fragments:
        assert f in r.stderr


def test_score_errors_exit_2(cli_app, runner, tmp_path, small_task, write_json, kaggle_files):
    sub = write_json(tmp_path / "submission.json", {"t1": [_att([[1]], [[1]])]})
    # no solutions: test outputs unknown
    nosol = write_json(tmp_path / "other" / "y_challenges.json", {"t1": small_task(with_test_output=False)})
    r = runner.invoke(cli_app, ["score", str(sub), "-d", str(nosol)])
    assert r.exit_code == 2 and "test outputs unknown" in r.stderr
    # wrong number of attempts
    sub2 = write_json(tmp_path / "s2.json", {"t2": [_att([[1]], [[1]])]})
    r = runner.invoke(cli_app, ["score", str(sub2), "-d", str(kaggle_files)])
    assert r.exit_code == 2 and "task t2" in r.stderr and "2 test input(s)" in r.stderr
    # missing submission file, unknown dataset, missing --dataset
    r = runner.invoke(cli_app, ["score", str(tmp_path / "none.json"), "-d", "arc1:eval"])
    assert r.exit_code == 2 and "file not found" in r.stderr
    r = runner.invoke(cli_app, ["score", str(sub), "-d", "arc1:evaluation"])
    assert r.exit_code == 2 and "unknown dataset" in r.stderr
    r = runner.invoke(cli_app, ["score", str(sub)])
    assert r.exit_code == 2 and "--dataset" in r.output
    assert "Traceback" not in r.output


def test_every_score_option_has_help(cli_app):
    cmd = typer.main.get_command(cli_app).commands["score"]
    assert cmd.help
    for param in cmd.params:
        assert getattr(param, "help", None), f"score: {param.name} has no help"
