from __future__ import annotations

import json
import os

import numpy as np
import pytest
from pydantic import ValidationError

from arcsynth.datasets import Dataset, load_dataset
from arcsynth.grid import grid_to_list
from arcsynth.scoring import (
    Attempts,
    ScoringError,
    SubmissionError,
    read_submission,
    score_submission,
    write_submission,
)

WRONG = [[0]]


@pytest.fixture(scope="module")
def arc1_eval() -> Dataset:
    return load_dataset("arc1:eval")


def subset(ds: Dataset, ids: list[str]) -> Dataset:
    return Dataset(name=f"{ds.name} subset", tasks={i: ds.get(i) for i in ids})


def answers(task) -> list[Attempts]:
    return [Attempts(attempt_1=p.output, attempt_2=p.output) for p in task.test]


def multi_test_ids(ds: Dataset, n: int) -> list[str]:
    return [t.id for t in ds if len(t.test) == 2][:n]


# ---------------------------------------------------------------- Attempts and submission I/O

def test_attempts_validate_grids():
    a = Attempts(attempt_1=[[1, 2]], attempt_2=np.array([[3]]))
    assert a.attempt_1.dtype == np.uint8 and grid_to_list(a.attempt_2) == [[3]]
    with pytest.raises(ValidationError, match="not rectangular"):
        Attempts(attempt_1=[[1, 2], [3]], attempt_2=[[1]])


def test_write_then_read_round_trips(tmp_path):
    sub = {
        "t1": [Attempts(attempt_1=[[1, 2]], attempt_2=[[3], [4]])],
        "t2": [Attempts(attempt_1=[[5]], attempt_2=[[5]]), Attempts(attempt_1=[[0, 9]], attempt_2=[[9, 0]])],
    }
    p = write_submission(tmp_path / "out" / "submission.json", sub)
    raw = json.loads(p.read_text())
    assert raw == {
        "t1": [{"attempt_1": [[1, 2]], "attempt_2": [[3], [4]]}],
        "t2": [{"attempt_1": [[5]], "attempt_2": [[5]]}, {"attempt_1": [[0, 9]], "attempt_2": [[9, 0]]}],
    }
    back = read_submission(p)
    assert list(back) == ["t1", "t2"]
    for tid in sub:
        for a, b in zip(sub[tid], back[tid]):
            assert np.array_equal(a.attempt_1, b.attempt_1) and np.array_equal(a.attempt_2, b.attempt_2)


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "submission.json"
    write_submission(p, {"t1": [Attempts(attempt_1=[[1]], attempt_2=[[1]])]})
    before = p.read_text()
    with pytest.raises(AttributeError):
        write_submission(p, {"t1": [{"attempt_1": [[2]]}]})  # not an Attempts
    assert p.read_text() == before
    assert os.listdir(tmp_path) == ["submission.json"]  # no temp file left behind
    write_submission(p, {"t9": [Attempts(attempt_1=[[2]], attempt_2=[[2]])]})
    assert json.loads(p.read_text()) == {"t9": [{"attempt_1": [[2]], "attempt_2": [[2]]}]}
    assert os.listdir(tmp_path) == ["submission.json"]


@pytest.mark.parametrize(
    "obj, fragments",
    [
        ([], ["must be a JSON object", "got list"]),
        ({"t1": {"attempt_1": [[1]]}}, ["task t1", "expected a list", "got dict"]),
        ({"t1": []}, ["task t1", "empty list"]),
        ({"t1": [[[1]]]}, ["task t1", "test 0", "expected an object", "got list"]),
        ({"t1": [{"attempt_1": [[1]], "attempt_2": [[1]]}, {"attempt_1": [[1]]}]}, ["task t1", "test 1", "attempt_2", "missing"]),
        ({"t1": [{"attempt_2": [[1]]}]}, ["task t1", "test 0", "attempt_1", "missing"]),
        ({"t1": [{"attempt_1": [[1, 2], [3]], "attempt_2": [[1]]}]}, ["task t1", "test 0", "attempt_1", "not a valid grid", "not rectangular"]),
        ({"t1": [{"attempt_1": [[1]], "attempt_2": [[10]]}]}, ["task t1", "test 0", "attempt_2", "cell value 10"]),
        ({"t1": [{"attempt_1": [[1]], "attempt_2": "[[1]]"}]}, ["task t1", "test 0", "attempt_2", "got str"]),
        ({"t1": [{"attempt_1": [[1]], "attempt_2": [[1.0]]}]}, ["task t1", "test 0", "attempt_2", "is float"]),
        ({"t1": [{"attempt_1": [[1]], "attempt_2": [[1]], "attempt_3": [[1]]}]}, ["task t1", "test 0", "unexpected key(s) 'attempt_3'"]),
    ],
)
def test_read_rejects_malformed_submissions_naming_file_task_test_and_field(tmp_path, obj, fragments):
    p = tmp_path / "submission.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(SubmissionError) as exc:
        read_submission(p)
    msg = str(exc.value)
    assert msg.startswith(str(p))
    for f in fragments:
        assert f in msg


def test_read_invalid_json_names_line_and_column(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"t1": [\n{"attempt_1": [[1]] "attempt_2": [[1]]}]}')
    with pytest.raises(SubmissionError, match="invalid JSON at line 2, column 21"):
        read_submission(p)


def test_read_missing_file(tmp_path):
    with pytest.raises(SubmissionError, match="file not found"):
        read_submission(tmp_path / "none.json")


# ---------------------------------------------------------------- scoring (real ARC-AGI-1 eval data)

def test_perfect_submission_scores_one(arc1_eval):
    sub = {t.id: answers(t) for t in arc1_eval}
    r = score_submission(sub, arc1_eval)
    assert r.score == 1.0 and r.total == 400 and r.n_tasks == 400 and r.n_tasks_solved == 400
    assert r.n_test_outputs == sum(len(t.test) for t in arc1_eval) > 400
    assert r.n_test_outputs_solved == r.n_test_outputs
    assert r.missing == [] and r.unknown == []


def test_a_test_output_counts_when_either_attempt_matches(arc1_eval):
    t = arc1_eval.get("00576224")
    right = t.test[0].output
    ds = subset(arc1_eval, [t.id])
    first = score_submission({t.id: [Attempts(attempt_1=right, attempt_2=WRONG)]}, ds)
    second = score_submission({t.id: [Attempts(attempt_1=WRONG, attempt_2=right)]}, ds)
    neither = score_submission({t.id: [Attempts(attempt_1=WRONG, attempt_2=WRONG)]}, ds)
    assert first.score == second.score == 1.0
    assert neither.score == 0.0 and neither.tasks[0].solved == [False]


def test_match_must_be_exact_including_shape(arc1_eval):
    t = next(t for t in arc1_eval if t.test[0].output.shape[0] != t.test[0].output.shape[1] and min(t.test[0].output.shape) > 1)
    out = t.test[0].output
    ds = subset(arc1_eval, [t.id])
    atts = [Attempts(attempt_1=out.T.copy(), attempt_2=out[:-1].copy())] + answers(t)[1:]
    assert score_submission({t.id: atts}, ds).tasks[0].solved[0] is False
    flipped = out.copy()
    flipped[0, 0] = (flipped[0, 0] + 1) % 10
    atts = [Attempts(attempt_1=flipped, attempt_2=flipped)] + answers(t)[1:]
    assert score_submission({t.id: atts}, ds).tasks[0].solved[0] is False


def test_multi_test_tasks_score_the_fraction_solved(arc1_eval):
    a, b = multi_test_ids(arc1_eval, 2)
    ta, tb = arc1_eval.get(a), arc1_eval.get(b)
    sub = {
        a: [Attempts(attempt_1=WRONG, attempt_2=ta.test[0].output), Attempts(attempt_1=WRONG, attempt_2=WRONG)],
        b: answers(tb),
    }
    r = score_submission(sub, subset(arc1_eval, [a, b]))
    by_id = {s.task_id: s for s in r.tasks}
    assert by_id[a].score == 0.5 and by_id[a].solved == [True, False]
    assert by_id[b].score == 1.0
    assert r.total == 1.5 and r.score == 0.75
    assert r.n_tasks_solved == 1 and r.n_test_outputs == 4 and r.n_test_outputs_solved == 3


def test_missing_tasks_score_zero_and_unknown_tasks_are_listed(arc1_eval):
    ids = ["00576224", "009d5c81", "00dbd492", "05a7bcf2"]
    ds = subset(arc1_eval, ids)
    sub = {"00576224": answers(ds.get("00576224")), "009d5c81": answers(ds.get("009d5c81")), "notatask": [Attempts(attempt_1=WRONG, attempt_2=WRONG)]}
    r = score_submission(sub, ds)
    assert r.missing == ["00dbd492", "05a7bcf2"]
    assert r.unknown == ["notatask"]
    assert r.score == 0.5 and r.total == 2.0 and r.n_tasks == 4
    assert [s.missing for s in r.tasks] == [False, False, True, True]


def test_wrong_number_of_attempts_is_an_error(arc1_eval):
    a = multi_test_ids(arc1_eval, 1)[0]
    t = arc1_eval.get(a)
    with pytest.raises(ScoringError, match=f"task {a}: the submission has 1 attempts entry but the task has 2 test input"):
        score_submission({a: answers(t)[:1]}, subset(arc1_eval, [a]))


def test_unknown_test_outputs_are_an_error(tmp_path, small_task, write_json):
    cp = write_json(tmp_path / "c.json", {"t1": small_task(with_test_output=False)})
    ds = load_dataset(str(cp))
    with pytest.raises(ScoringError, match="test outputs unknown for task\\(s\\) t1"):
        score_submission({"t1": [Attempts(attempt_1=WRONG, attempt_2=WRONG)]}, ds)


def test_read_submission_scores_like_the_objects(tmp_path, arc1_eval):
    ids = multi_test_ids(arc1_eval, 3)
    ds = subset(arc1_eval, ids)
    raw = {ids[0]: [{"attempt_1": grid_to_list(p.output), "attempt_2": WRONG} for p in ds.get(ids[0]).test]}
    p = tmp_path / "submission.json"
    p.write_text(json.dumps(raw))
    r = score_submission(read_submission(p), ds)
    assert r.total == 1.0 and r.missing == ids[1:]


def test_attempts_compare_dump_and_hash_by_grid_content():
    a = Attempts(attempt_1=[[1, 2]], attempt_2=[[3]])
    same = Attempts(attempt_1=np.array([[1, 2]]), attempt_2=[[3]])
    other = Attempts(attempt_1=[[1, 2]], attempt_2=[[4]])
    assert a == same and a != other
    assert len({a, same, other}) == 2
    assert a.model_dump() == {"attempt_1": [[1, 2]], "attempt_2": [[3]]}
    assert json.loads(a.model_dump_json()) == {"attempt_1": [[1, 2]], "attempt_2": [[3]]}
