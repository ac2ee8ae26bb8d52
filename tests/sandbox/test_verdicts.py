"""Verdicts on real ARC tasks: passes, near misses, errors and invalid outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest


pytestmark = pytest.mark.asyncio(loop_scope="module")

ROT180 = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n"


async def test_correct_program_passes_and_is_rechecked(sandbox, rot180_task):
    v = await sandbox.run(ROT180, rot180_task)
    assert [p.status for p in v.train] == ["pass"] * len(rot180_task.train)
    assert v.all_train_pass and v.rechecked
    assert all(p.cell_accuracy == 1.0 and p.shape_match for p in v.train)
    # Test outputs are produced but not judged unless asked.
    assert [p.status for p in v.test] == ["unchecked"]
    assert v.test[0].output == rot180_task.test[0].output.tolist()
    assert v.test[0].expected_shape is None
    assert "process" in v.isolation and "seccomp" in v.isolation
    json.dumps(v.summary())


async def test_check_test_compares_known_test_outputs(sandbox, rot180_task):
    v = await sandbox.run(ROT180, rot180_task, check_test=True)
    assert [p.status for p in v.test] == ["pass"]


@pytest.mark.parametrize(
    ("task_id", "source"),
    [
        ("6150a2bd", "def transform(grid):\n    return [list(map(int, row)) for row in grid[::-1, ::-1]]\n"),
        ("67a3c6ac", "def transform(grid):\n    return [row[::-1] for row in grid.tolist()]\n"),
        ("67a3c6ac", "import numpy as np\ndef transform(grid):\n    return np.fliplr(grid).astype(np.uint8)\n"),
    ],
)
async def test_list_of_lists_and_other_dtypes_pass(sandbox, load_task, task_id, source):
    v = await sandbox.run(source, load_task(task_id))
    assert v.all_train_pass, v.summary()


# Real solvers use the standard library the way any module does: a dataclass
# or an Enum looks its module up in sys.modules, pickle-free but by name.
MODULE_FEATURES = """
import enum
import typing
from dataclasses import dataclass, field

import numpy as np


class Turn(enum.Enum):
    HALF = 2


class Step(typing.NamedTuple):
    turns: int


@dataclass(frozen=True, order=True)
class Plan:
    turn: Turn
    steps: list = field(default_factory=list)


def transform(grid):
    plan = Plan(Turn.HALF, [Step(1), Step(1)])
    assert typing.get_type_hints(Step)["turns"] is int and repr(plan).startswith("Plan(")
    return np.rot90(grid, sum(s.turns for s in plan.steps))
"""


async def test_dataclasses_enums_and_named_tuples_work(sandbox, rot180_task):
    v = await sandbox.run(MODULE_FEATURES, rot180_task)
    assert v.all_train_pass, [(p.status, p.error) for p in v.train]


async def test_near_miss_reports_cell_accuracy(sandbox, rot180_task):
    src = ROT180.replace("return np.rot90(grid, 2)", "out = np.rot90(grid, 2)\n    out[0, 0] = (out[0, 0] + 1) % 10\n    return out")
    v = await sandbox.run(src, rot180_task)
    for p in v.train:
        assert p.status == "wrong" and p.shape_match is True
        assert p.cell_accuracy == pytest.approx(8 / 9)
        assert p.expected_shape == (3, 3)
    assert v.pairs_passed == 0 and v.train_accuracy == pytest.approx(8 / 9)
    assert not v.rechecked


async def test_wrong_shape(sandbox, rot180_task):
    v = await sandbox.run("def transform(grid):\n    return grid[:2]\n", rot180_task)
    p = v.train[0]
    assert p.status == "wrong" and p.shape_match is False and p.cell_accuracy is None
    assert p.expected_shape == (3, 3) and np.array(p.output).shape == (2, 3)
    assert not v.shape_match


async def test_syntax_error_fails_every_pair(sandbox, rot180_task):
    v = await sandbox.run("def transform(grid)\n    return grid\n", rot180_task)
    for p in v.train + v.test:
        assert p.status == "error" and p.error_type == "SyntaxError"
        assert "line 1" in p.error


async def test_missing_transform(sandbox, rot180_task):
    v = await sandbox.run("def solve(grid):\n    return grid\n", rot180_task)
    assert {p.error_type for p in v.train + v.test} == {"MissingTransform"}
    assert all(p.status == "error" for p in v.train + v.test)


async def test_runtime_error_names_type_and_line(sandbox, rot180_task):
    src = "def helper(g):\n    return g[99, 99]\n\ndef transform(grid):\n    return helper(grid)\n"
    v = await sandbox.run(src, rot180_task)
    p = v.train[0]
    assert p.status == "error" and p.error_type == "IndexError"
    assert "return g[99, 99]" in p.error and "IndexError" in p.error
    assert len(p.error) <= 400


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("return np.zeros((31, 31), dtype=int)", "31x31"),
        ("return np.full((3, 3), 10)", "10 is outside"),
        ("return [[1, 2, 3], [1, 2]]", "not rectangular"),
        ("return None", "NoneType"),
        ("return 'grid'", "str"),
        ("return np.zeros((3, 3)) + 0.5", "dtype float64"),
        ("return np.zeros((3, 3), dtype=bool)", "dtype bool"),
        ("return [[True, False]]", "bool"),
        ("return np.zeros((2, 2, 2), dtype=int)", "3 dimension"),
        ("return []", "no rows"),
        ("return [[1.0, 2.0]]", "float"),
        ("return [[-1, 0]]", "-1 is outside"),
    ],
)
async def test_invalid_outputs(sandbox, rot180_task, body, reason):
    v = await sandbox.run(f"import numpy as np\n\ndef transform(grid):\n    {body}\n", rot180_task)
    for p in v.train + v.test:
        assert p.status == "invalid_output", p
        assert p.error_type == "InvalidOutput" and reason in p.error
        assert p.output is None


async def test_each_pair_gets_a_fresh_int_copy(sandbox, rot180_task):
    # Mutating the input in place must not leak into later pairs; the input is
    # an integer numpy array.
    src = (
        "import numpy as np\n"
        "def transform(grid):\n"
        "    assert isinstance(grid, np.ndarray) and grid.dtype.kind == 'i'\n"
        "    grid[:] = grid[::-1, ::-1].copy()\n"
        "    return grid\n"
    )
    v = await sandbox.run(src, rot180_task, check_test=True)
    assert v.all_train_pass and v.test[0].status == "pass"


async def test_stats_count_work(sandbox, rot180_task):
    before = sandbox.stats["candidates"]
    await sandbox.run(ROT180, rot180_task)
    s = sandbox.stats
    assert s["candidates"] == before + 1
    assert s["pairs"] >= 5 and s["busy_s"] > 0 and s["candidates_per_s"] > 0

