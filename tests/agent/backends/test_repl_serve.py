"""The REPL protocol end to end: SmolLM2 over a real `transformers serve`, the real sandbox.

SmolLM2-135M does not solve ARC; what is under test is the conversation: every turn
goes to the server with the whole conversation so far (its earlier replies as
assistant messages), every closed code block it writes runs in the sandbox as a
tool call whose result comes back as the next user message, and the attempt ends
within its limits with a repl_end event.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.program import code_blocks
from arcsynth.datasets import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripted_backend, which http_double uses
from http_double import solve_over_http  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_a_repl_conversation_with_a_real_server(transformers_server):
    base_url, model = transformers_server
    task = load_dataset("arc1:train").get("3c9b0459")
    cfg = parse_config({}, [
        "search.mode='repl'", "budget.max_programs=1", "search.repl.max_turns=3", "search.repl.max_tool_calls=4",
        "sampling.max_tokens=40", "sampling.temperature=0.7", "seed=3",
    ])
    outcome, rec = await solve_over_http(task, cfg, model, base_url)
    assert outcome.status == "done", outcome.stop_reason
    prompts, completions, calls = rec.of("prompt"), rec.of("completion"), rec.of("tool_call")
    [end] = rec.of("repl_end")
    assert 1 <= end.turns <= 3 and len(prompts) == len(completions) == end.turns
    assert all(c.completion_tokens <= 40 and c.prompt_tokens > 0 for c in completions)  # the server's own counts
    for k in range(1, end.turns):
        earlier, now = prompts[k - 1].messages, prompts[k].messages
        # The conversation grows by the reply, verbatim, and what it was told back.
        assert now[: len(earlier)] == earlier
        assert now[len(earlier)] == {"role": "assistant", "content": completions[k - 1].text}
        assert now[len(earlier) + 1]["role"] == "user" and now[-1]["role"] == "user"
        told = now[-1]["content"]
        ran = [c for c in calls if c.request_id == prompts[k - 1].request_id]
        blocks = [code for code, closed in code_blocks(completions[k - 1].text) if closed and code.strip()]
        assert len(ran) == len(blocks)
        if ran:
            assert "code run" in told and all(c.status in ("ok", "error", "timeout", "crashed", "refused") for c in ran)
        else:
            assert "```python" in told  # told how to run code or submit
    assert end.tool_calls == sum(c.status != "refused" for c in calls) <= 4
    assert end.outcome in ("submitted", "max_turns")
