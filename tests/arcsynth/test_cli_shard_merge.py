"""`solve --shard K/N` and `arcsynth merge`: N shard runs merged equal one process's run.

Every run here solves real ARC tasks through the real openai backend, sandbox and
run directory, against the pipeline server double (deterministic seeded completions).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.config import ConfigError, load_config, parse_shard
from agent.benchmarks.pipeline import server_double
from arcsynth.cli import app
from arcsynth.datasets import shard_tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from double_run import TASKS, result_differences, write_config  # noqa: E402

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [*map(str, args)])


def point_at(run: Path, base_url: str) -> None:
    """Point a run's config at a new double (a new port; where a server listens is not hashed)."""
    text = (run / "config.toml").read_text()
    old = load_config(run / "config.toml").model.base_url
    (run / "config.toml").write_text(text.replace(str(old), base_url))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The double, a config, a one-process run of it and its two shard runs."""
    tmp = tmp_path_factory.mktemp("shards")
    with server_double(TASKS, 0.0, 0, "arc1:train") as double:
        cfg = write_config(tmp / "cfg.toml", double.base_url)
        for args, out in (((), "one"), (("--shard", "0/2"), "s0"), (("--shard", "1/2"), "s1")):
            r = cli("solve", cfg, *args, "--out", tmp / out)
            assert r.exit_code == 0, r.output
        yield tmp


def test_shard_values_are_checked():
    assert parse_shard("1/4") == (1, 4) and parse_shard(" 0/1 ") == (0, 1)
    for bad, words in (("2/2", "K must be one of 0..1"), ("1/0", "N must be at least 1"), ("a/b", "must be K/N"),
                       ("3", "must be K/N"), ("-1/2", "must be K/N")):
        with pytest.raises(ValueError, match=words):
            parse_shard(bad)


def test_the_shards_are_disjoint_and_together_hold_every_task_in_order():
    tasks = list(range(7))
    parts = [shard_tasks(tasks, k, 3) for k in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(parts, [])) == tasks


def test_bad_shards_are_clear_errors_and_create_nothing(tmp_path):
    cfg = write_config(tmp_path / "cfg.toml", "http://127.0.0.1:9/v1")
    for shard, words in (("2/2", "--shard: K must be one of 0..1 in K/N"), ("1/0", "--shard: N must be at least 1"),
                         ("half", "--shard: must be K/N")):
        r = cli("solve", cfg, "--shard", shard, "--out", tmp_path / "run")
        assert r.exit_code == 2 and words in r.output, r.output
    r = cli("solve", cfg, "--shard", "7/8", "--out", tmp_path / "run")  # 7 tasks: the 8th shard is empty
    assert r.exit_code == 2 and "data.shard 7/8: shard 7 is empty, the selection has only 7 task(s)" in r.output, r.output
    assert not (tmp_path / "run").exists()
    (tmp_path / "bad.toml").write_text(cfg.read_text().replace("[data]\n", '[data]\nshard = "3/2"\n'))
    with pytest.raises(ConfigError, match=r"data\.shard: K must be one of 0\.\.1"):
        load_config(tmp_path / "bad.toml")


def test_a_shard_run_records_its_shard_in_config_and_provenance(runs):
    for k in (0, 1):
        run = runs / f"s{k}"
        assert load_config(run / "config.toml").data.shard == f"{k}/2"
        data = json.loads((run / "provenance.json").read_text())["data"]
        assert data["shard"] == f"{k}/2" and data["n_tasks"] == len(TASKS[k::2]) and data["n_tasks_selected"] == len(TASKS)
        assert sorted(p.stem for p in (run / "results").glob("*.json")) == sorted(TASKS[k::2])
    assert json.loads((runs / "one" / "provenance.json").read_text())["data"].get("shard") is None


def test_merged_shards_are_the_one_process_run(runs, tmp_path):
    out = tmp_path / "merged"
    r = cli("merge", runs / "s1", runs / "s0", "--out", out)  # in any order
    assert r.exit_code == 0, r.output
    assert f"run directory: {out}" in r.output and "pass@2 score" in r.output
    one = runs / "one"
    assert result_differences(one, out) == []
    assert (out / "submission.json").read_text() == (one / "submission.json").read_text()
    s_one, s_out = (json.loads((d / "summary.json").read_text()) for d in (one, out))
    assert s_out["pass2"] == s_one["pass2"] and s_one["pass2"]["total"] >= 2  # the double solves some tasks
    assert s_out["config_hash"] == s_one["config_hash"]
    for key in ("tasks_selected", "tasks_done", "n_programs", "program_status_counts", "completion_tokens"):
        assert s_out[key] == s_one[key], key
    assert load_config(out / "config.toml").data.shard is None
    prov = json.loads((out / "provenance.json").read_text())
    assert [m["shard"] for m in prov["merged_from"]] == ["0/2", "1/2"]
    assert prov["data"]["tasks_sha256"] == json.loads((one / "provenance.json").read_text())["data"]["tasks_sha256"]
    assert sorted(p.parent.name for p in (out / "programs").glob("*/*.py")) == sorted(
        p.parent.name for p in (one / "programs").glob("*/*.py"))
    # The merged run opens in the viewer as a whole run.
    from viewer.index import RunIndex

    with RunIndex.open(out) as ix:
        header = ix.header()
        assert (header.tasks, header.tasks_done, header.status) == (len(TASKS), len(TASKS), "finished")
        assert header.config_hash == s_one["config_hash"]
    r = cli("show", out, TASKS[0])
    assert r.exit_code == 0 and TASKS[0] in r.output, r.output


def test_a_shard_resumes_its_own_tasks_only(runs, tmp_path):
    run = tmp_path / "s1"
    shutil.copytree(runs / "s1", run)
    (run / "results" / f"{TASKS[3]}.json").unlink()
    r = cli("solve", "--resume", run, "--shard", "0/2")
    assert r.exit_code == 2 and "the run in" in r.output and "is shard 1/2" in r.output, r.output
    with server_double(TASKS, 0.0, 0, "arc1:train") as double:
        point_at(run, double.base_url)
        r = cli("solve", "--resume", run, "--shard", "1/2")
    assert r.exit_code == 0, r.output
    assert f"({len(TASKS[1::2])} tasks, {len(TASKS[1::2]) - 1} already done" in r.output
    from agent.trace import TaskStart, read_trace

    starts = [e.task_id for e in read_trace(run / "trace.jsonl") if isinstance(e, TaskStart)]
    assert sorted(starts) == sorted(TASKS[1::2] + [TASKS[3]])
    assert result_differences(runs / "s1", run) == []


def test_merge_refuses_what_is_not_the_shards_of_one_run(runs, tmp_path):
    def refused(*paths: Path, out: Path = tmp_path / "m") -> str:
        r = cli("merge", *paths, "--out", out)
        assert r.exit_code == 2, r.output
        assert out in paths or not out.exists()
        return " ".join(r.output.split())

    s0, s1, one = runs / "s0", runs / "s1", runs / "one"
    assert "shard(s) 1/2 missing" in refused(s0)
    assert f"{one} is not a shard run" in refused(s0, one)
    assert f"{s0} is given twice" in refused(s0, s1, s0)
    assert "is one of the runs to merge" in refused(s0, s1, out=s1)
    copy = tmp_path / "copy"
    shutil.copytree(s0, copy)
    assert f"{s0} and {copy} are both shard 0/2" in refused(s0, copy, s1)
    # A shard of another config: a different sampling temperature changes results.
    shutil.rmtree(copy)
    shutil.copytree(s1, copy)
    cfg = copy / "config.toml"
    cfg.write_text(cfg.read_text().replace("temperature = 1.0", "temperature = 0.5"))
    msg = refused(s0, copy)
    assert f"{s0} and {copy} were run with different configs" in msg and "sampling.temperature" in msg
    # A task with a result in two shards.
    shutil.rmtree(copy)
    shutil.copytree(s1, copy)
    shutil.copy(s0 / "results" / f"{TASKS[0]}.json", copy / "results")
    assert f"task {TASKS[0]} has a result in both {s0} and {copy}" in refused(s0, copy)
    assert "no such directory" in refused(s0, tmp_path / "nothing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    r = cli("merge", s0, s1, "--out", tmp_path / "full")
    assert r.exit_code == 2 and "exists and is not empty" in " ".join(r.output.split()), r.output


def test_a_merge_of_unfinished_shards_says_so_and_resumes_to_the_one_process_run(runs, tmp_path):
    s0 = tmp_path / "s0"
    shutil.copytree(runs / "s0", s0)
    (s0 / "results" / f"{TASKS[2]}.json").unlink()
    out = tmp_path / "merged"
    r = cli("merge", s0, runs / "s1", "--out", out)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert f"1 task(s) of the selection have no finished result (e.g. {TASKS[2]})" in text
    assert f"arcsynth solve --resume {out}" in text
    assert json.loads((out / "summary.json").read_text())["tasks_done"] == len(TASKS) - 1
    with server_double(TASKS, 0.0, 0, "arc1:train") as double:
        point_at(out, double.base_url)
        r = cli("solve", "--resume", out)
    assert r.exit_code == 0, r.output
    assert result_differences(runs / "one", out) == []
    assert (out / "submission.json").read_text() == (runs / "one" / "submission.json").read_text()


def test_a_shard_replays_its_own_tasks(runs, tmp_path):
    r = cli("replay", runs / "s1", "--out", tmp_path / "replay")
    assert r.exit_code == 0, r.output
    assert "replay identical" in r.output
    assert sorted(p.stem for p in (tmp_path / "replay" / "results").glob("*.json")) == sorted(TASKS[1::2])
