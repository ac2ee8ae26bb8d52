from __future__ import annotations

import pytest

from arcsynth.grid import grid_to_list
from arcsynth.task import TaskFormatError, task_from_json


def test_task_from_json_builds_pairs(small_task):
    t = task_from_json(small_task(n_test=2), "abc", source="f.json")
    assert t.id == "abc"
    assert len(t.train) == 2 and len(t.test) == 2
    assert grid_to_list(t.train[0].output) == [[1, 2], [3, 4]]
    assert t.test_outputs_known


def test_test_outputs_may_be_absent(small_task):
    t = task_from_json(small_task(with_test_output=False), "abc")
    assert t.test[0].output is None
    assert not t.test_outputs_known


def test_to_json_round_trips(small_task):
    obj = small_task(n_test=2)
    assert task_from_json(obj, "x").to_json() == obj


@pytest.mark.parametrize(
    "mutate, where, reason",
    [
        (lambda t: t.pop("train"), None, "missing 'train'"),
        (lambda t: t.pop("test"), None, "missing 'test'"),
        (lambda t: t.__setitem__("train", []), None, "at least one train pair"),
        (lambda t: t.__setitem__("test", []), None, "at least one test input"),
        (lambda t: t.__setitem__("train", {"a": 1}), None, "'train' must be a list"),
        (lambda t: t["train"].__setitem__(1, [1]), "train pair 1", "pair must be an object"),
        (lambda t: t["train"][1].pop("output"), "train pair 1", "missing 'output'"),
        (lambda t: t["test"][0].pop("input"), "test pair 0", "missing 'input'"),
        (lambda t: t["train"][1].__setitem__("input", [[1, 2], [3]]), "train pair 1", "input: grid is not rectangular"),
        (lambda t: t["test"][0].__setitem__("output", [[12]]), "test pair 0", "output: cell value 12"),
    ],
)
def test_errors_name_source_task_pair_and_reason(small_task, mutate, where, reason):
    obj = small_task()
    mutate(obj)
    with pytest.raises(TaskFormatError) as exc:
        task_from_json(obj, "t1", source="dir/t1.json")
    msg = str(exc.value)
    assert msg.startswith("dir/t1.json, task t1")
    assert reason in msg
    if where:
        assert where in msg
    assert exc.value.task_id == "t1" and exc.value.where == where


def test_a_task_must_be_an_object():
    with pytest.raises(TaskFormatError, match="must be a JSON object, got list"):
        task_from_json([], "t1")
