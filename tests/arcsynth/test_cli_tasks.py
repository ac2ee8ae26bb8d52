from __future__ import annotations

import json

import pytest
import typer.main

from arcsynth.grid import PALETTE

# A colour terminal, as rich detects one; NO_COLOR/TERM from the caller's shell must not leak in.
COLOUR_ENV = {"FORCE_COLOR": "1", "COLORTERM": "truecolor", "TERM": "xterm-256color", "NO_COLOR": None, "COLUMNS": "160"}


def _bg(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"48;2;{r};{g};{b}m"


def test_list_plain_shows_ids_counts_and_sizes(cli_app, runner):
    r = runner.invoke(cli_app, ["tasks", "list", "arc1:eval", "--limit", "3"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "00576224  2 train  1 test  train 2x2->6x6  test 2x2"
    assert len(lines) == 4 and lines[-1] == "# 3 of 400 tasks in arc1:eval"


def test_list_json(cli_app, runner):
    r = runner.invoke(cli_app, ["tasks", "list", "arc1:eval", "--json", "-n", "2"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["dataset"] == "arc1:eval" and data["n_tasks"] == 400
    assert [t["id"] for t in data["tasks"]] == ["00576224", "009d5c81"]
    first = data["tasks"][0]
    assert first["n_train"] == 2 and first["train"][0] == {"input": [2, 2], "output": [6, 6]}


def test_list_table_on_a_terminal(cli_app, runner):
    r = runner.invoke(cli_app, ["tasks", "list", "arc2:eval", "-n", "2"], env=COLOUR_ENV)
    assert r.exit_code == 0, r.output
    assert "arc2:eval: 2 of 120 tasks" in r.stdout and "┃" in r.stdout


def test_list_lenient_warns_about_skipped_tasks(cli_app, runner, tmp_path, small_task, write_json):
    write_json(tmp_path / "ok.json", small_task())
    (tmp_path / "broken.json").write_text("[1,")
    r = runner.invoke(cli_app, ["tasks", "list", str(tmp_path), "--lenient"])
    assert r.exit_code == 0
    assert r.stdout.startswith("ok  2 train  1 test")
    assert "warning: skipped invalid task" in r.stderr and "broken.json" in r.stderr
    strict = runner.invoke(cli_app, ["tasks", "list", str(tmp_path)])
    assert strict.exit_code == 2 and "broken.json" in strict.stderr and "invalid JSON at line 1" in strict.stderr


def test_show_plain_draws_digits_side_by_side(cli_app, runner):
    r = runner.invoke(cli_app, ["tasks", "show", "arc1:eval", "00576224"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "task 00576224: 2 train, 1 test"
    i = lines.index("train 0:")
    assert lines[i + 1].split() == ["input", "2x2", "output", "6x6"]
    assert lines[i + 2].split() == ["86", "868686"]
    assert "\x1b" not in r.stdout


def test_show_colours_on_a_terminal_and_plain_flag_overrides(cli_app, runner):
    r = runner.invoke(cli_app, ["tasks", "show", "arc1:eval", "00576224"], env=COLOUR_ENV)
    assert r.exit_code == 0, r.output
    assert "input 2x2" in r.stdout and "output 6x6" in r.stdout
    for colour in (8, 6, 4):  # the first train input is [[8, 6], [6, 4]]
        assert _bg(PALETTE[colour]) in r.stdout
    plain = runner.invoke(cli_app, ["tasks", "show", "arc1:eval", "00576224", "--plain"], env=COLOUR_ENV)
    assert "\x1b" not in plain.stdout and "86" in plain.stdout


def test_show_can_hide_test_outputs(cli_app, runner):
    r = runner.invoke(cli_app, ["tasks", "show", "arc1:eval", "00576224", "--hide-test-outputs"])
    assert r.exit_code == 0
    assert "output hidden" in r.stdout


def test_show_a_valid_task_from_a_directory_with_a_broken_one(cli_app, runner, tmp_path, small_task, write_json):
    write_json(tmp_path / "ok.json", small_task())
    bad = small_task()
    bad["train"][1]["output"] = [[1, 2], [3]]
    write_json(tmp_path / "bad.json", bad)
    r = runner.invoke(cli_app, ["tasks", "show", str(tmp_path), "ok"])
    assert r.exit_code == 0 and "task ok" in r.stdout
    r = runner.invoke(cli_app, ["tasks", "show", str(tmp_path), "bad"])
    assert r.exit_code == 2
    assert "bad.json" in r.stderr and "task bad" in r.stderr and "train pair 1" in r.stderr and "not rectangular" in r.stderr


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["tasks", "list", "arc3:eval"], ["unknown dataset 'arc3:eval'", "arc1:eval"]),
        (["tasks", "list", "no/such/dir"], ["no such file or directory: no/such/dir"]),
        (["tasks", "show", "arc1:eval", "00576225"], ["unknown task '00576225'", "did you mean 00576224", "arc1:eval"]),
        (["tasks", "list", "arc1:eval", "--limit", "0"], ["--limit"]),
        (["tasks", "show", "arc1:eval"], ["Missing argument"]),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(cli_app, runner, args, fragments):
    r = runner.invoke(cli_app, args)
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    for f in fragments:
        assert f in r.output


def test_invalid_task_file_exits_2_naming_file_task_pair(cli_app, runner, tmp_path, small_task, write_json):
    bad = small_task()
    bad["test"][0]["input"] = [[3, 14]]
    p = write_json(tmp_path / "cafe.json", bad)
    r = runner.invoke(cli_app, ["tasks", "show", str(p), "cafe"])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {p}, task cafe, test pair 0: input: cell value 14 is outside 0..9"


def test_every_option_and_argument_has_help(cli_app):
    group = typer.main.get_command(cli_app)
    tasks_group = group.commands["tasks"]
    for name in ("list", "show"):
        cmd = tasks_group.commands[name]
        assert cmd.help
        for param in cmd.params:
            assert getattr(param, "help", None), f"tasks {name}: {param.name} has no help"


def test_a_train_set_title_is_not_turned_into_an_emoji(cli_app, runner):
    # Rich reads ':train:' as the code of a train picture unless emoji are off.
    r = runner.invoke(cli_app, ["tasks", "list", "arc1:train", "-n", "2"], env=COLOUR_ENV)
    assert r.exit_code == 0, r.output
    assert "arc1:train: 2 of 400 tasks" in r.stdout
