"""REPL mode with OpenAI function calling, through the real OpenAI backend and the real sandbox.

The server is a scripted test double that answers like vLLM with a tool-call parser and a
reasoning parser (`tool_calls`, `reasoning_content`): it calls run_python, reads the tool
result it is sent back, then calls submit. What is under test is our side of the
protocol: the tools offered, the assistant turn's calls and reasoning sent back, one tool
message per call, and the submitted program verified and voting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from arcsynth.datasets import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripted_backend, which http_double uses
from http_double import JSONHandler, LocalServer, solve_over_http  # noqa: E402

pytestmark = pytest.mark.asyncio

PROGRAM = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(np.array(grid), 2)\n"


class ToolCallingServerDouble(LocalServer):
    """TEST DOUBLE of an OpenAI-compatible server with function calling and a reasoning parser."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        double = self

        class Handler(JSONHandler):
            def do_GET(self):
                self._models("double")

            def do_POST(self):
                body = self._body()
                double.requests.append(body)
                self._json(200, double.answer(body))


        self._serve(Handler)

    def answer(self, body: dict) -> dict:
        last = body["messages"][-1]
        if last["role"] != "tool":
            call = {"name": "run_python", "arguments": json.dumps({"code": "np.rot90(train_inputs[0], 2).shape"})}
            message = {"role": "assistant", "content": None, "reasoning_content": "Rotate it?",
                       "tool_calls": [{"id": "call_1", "type": "function", "function": call}]}
        else:
            call = {"name": "submit", "arguments": json.dumps({"program": PROGRAM})}
            message = {"role": "assistant", "content": "", "reasoning_content": "The shape fits.",
                       "tool_calls": [{"id": "call_2", "type": "function", "function": call}]}
        return {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20}}




async def test_run_python_and_submit_as_function_calls():
    task = load_dataset("arc1:train").get("3c9b0459")
    with ToolCallingServerDouble() as double:
        cfg = parse_config({}, [
            "model.backend='openai'", f"model.base_url='{double.url}'", "model.model='double'", "model.tool_calls=true",
            "search.mode='repl'", "budget.max_programs=1", "budget.stop_after_passing=1",
        ])
        assert cfg.repl_protocol() == "tools"
        outcome, rec = await solve_over_http(task, cfg, "double", double.url)
    assert outcome.solved_train and outcome.score == 1.0
    first, second = double.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["run_python", "submit"]
    assert "call the `run_python` tool" in first["messages"][0]["content"] and "SUBMIT" not in first["messages"][0]["content"]
    # The assistant turn goes back with its calls and its reasoning; the result as a tool message.
    assistant, tool = second["messages"][-2:]
    assert assistant["tool_calls"][0]["function"]["name"] == "run_python" and assistant["reasoning_content"] == "Rotate it?"
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_1"
    h, w = task.train[0].input.shape
    assert f"({h}, {w})" in tool["content"]
    [call] = rec.of("tool_call")
    assert call.status == "ok" and call.code == "np.rot90(train_inputs[0], 2).shape"
    assert rec.of("repl_end")[0].outcome == "submitted"
    assert rec.of("completion")[1].tool_calls[0]["name"] == "submit"
    assert rec.of("program")[0].source.strip() == PROGRAM.strip()
    assert rec.of("prompt")[1].messages[-1]["tool_call_id"] == "call_1"


async def test_function_calling_needs_a_server_that_does_it():
    with pytest.raises(ConfigError, match="model.*tool_calls"):
        parse_config({}, ["model.tool_calls=true"])
    with pytest.raises(ConfigError, match="search.repl.protocol = 'tools' needs model.tool_calls"):
        parse_config({}, ["search.mode='repl'", "search.repl.protocol='tools'"])
