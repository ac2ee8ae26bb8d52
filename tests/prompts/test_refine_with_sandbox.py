"""The refinement chain end to end with real parts: a model-style reply is
extracted, run in the real sandbox on a real ARC task, and its verdict becomes
the feedback of a refinement prompt."""

from __future__ import annotations

import pytest
import pytest_asyncio

from agent.program import extract_program
from prompts import ENCODINGS, Parent, build_refine_prompt
from sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

TASK_ID = "6150a2bd"  # rotate the grid 180 degrees; 3x3 and 2x3 train grids

NEAR_MISS_REPLY = """The output is the input rotated by 180 degrees.

```python
import numpy as np

def transform(grid):
    out = np.rot90(grid, 2)
    out[0, 0] = (out[0, 0] + 1) % 10
    return out
```"""

CRASH_REPLY = """```python
def solve(grid):
    h = len(grid)
    return grid[::-1] * (h // (h - h))
```"""

WRONG_SHAPE_REPLY = "```python\ndef transform(grid):\n    return grid[:1]\n```"


def chars_div_4_token_count(messages) -> int:
    """Test double for a tokenizer: about four characters per token."""
    return sum(len(m.content) for m in messages) // 4


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox():
    async with Sandbox(SandboxConfig(workers=1, pair_timeout_s=1.0, candidate_timeout_s=4.0)) as sb:
        yield sb


async def _parent(sandbox, task, reply: str) -> Parent:
    extraction = extract_program(reply)
    assert extraction.status == "ok", extraction.detail
    verdict = await sandbox.run(extraction.source, task)
    return Parent(source=extraction.source, verdict=verdict)


async def test_feedback_from_real_verdicts(sandbox, arc_task):
    task = arc_task(TASK_ID)
    near = await _parent(sandbox, task, NEAR_MISS_REPLY)
    crash = await _parent(sandbox, task, CRASH_REPLY)
    shape = await _parent(sandbox, task, WRONG_SHAPE_REPLY)
    prompt = build_refine_prompt(
        task, [crash, shape, near], max_parents=3, max_prompt_tokens=10**6, count_tokens=chars_div_4_token_count
    )
    text = prompt.messages[-1].content
    # The near miss has the best cell accuracy; the two scoring 0 keep their given order.
    assert prompt.parents_shown == [2, 0, 1]

    # Near miss: one wrong cell per pair, at the top-left, shown as produced/expected.
    for k, pair in enumerate(task.train, start=1):
        n = pair.output.size
        assert f"Example {k}: wrong output: 1 of {n} cells differ" in text
        expected = int(pair.output[0, 0])
        assert f"{(expected + 1) % 10}/{expected}" in text
    # Wrong shape: stated plainly with the real shapes.
    for k, pair in enumerate(task.train, start=1):
        h, w = pair.output.shape
        assert f"Example {k}: wrong shape: your output is 1x{pair.input.shape[1]}, expected {h}x{w}." in text
    # Crash: the renamed function ran, its error type and the failing line are in the tail.
    assert "transform = solve" in text
    assert "Example 1: the program raised ZeroDivisionError" in text
    assert "return grid[::-1] * (h // (h - h))" in text
    assert ENCODINGS["spaced"].encode(task.test[0].output) not in text
