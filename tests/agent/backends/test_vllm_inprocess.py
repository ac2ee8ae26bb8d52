"""VLLMBackend on vLLM's AsyncLLM, with a test double of the engine that schedules like it.

vLLM needs a CUDA box and is not under test; what is under test is how the backend
drives an asynchronous, continuously batching engine. ``FakeAsyncLLM`` (a test
double) steps like vLLM V1's scheduler: requests join the running batch at the next
step whenever they arrive, every step gives each running sample one token, a sample
that reaches its length finishes, and a request leaves the batch (its stream yields
its one FINAL_ONLY output) when all its samples have. The tokenizer (SmolLM2's, chat
template included), the solve loop, the sandbox, the run record and the ARC tasks
are real.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from agent.backends.base import BackendError, Message, SamplingParams
from agent.backends.chat_format import load_tokenizer
from agent.backends.vllm_inprocess import VLLMBackend

FINAL_ONLY = "FINAL_ONLY"  # stands for vllm.sampling_params.RequestOutputKind.FINAL_ONLY


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


@dataclass
class FakeEngineArgs:
    """Test double of ``vllm.engine.arg_utils.AsyncEngineArgs``: keeps its keyword arguments."""

    kwargs: dict[str, Any]

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs


@dataclass
class FakeSamplingParams:
    """Test double of ``vllm.SamplingParams``."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    top_k: int | None = None
    min_p: float | None = None
    stop: list[str] | None = None
    output_kind: Any = None


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]
    finished: bool = True


@dataclass
class _Running:
    request_id: str
    prompt_token_ids: list[int]
    samples: list[tuple[str, int]]  # (text, tokens) per sample
    out: asyncio.Queue
    joined_step: int = -1
    finished_step: int = -1
    generated: list[int] = field(default_factory=list)


Script = Callable[[str, list[int], FakeSamplingParams], list[tuple[str, int]]]


class FakeAsyncLLM:
    """Test double of ``vllm.v1.engine.async_llm.AsyncLLM``: step-wise continuous batching.

    ``script(request_id, prompt_token_ids, params)`` gives each of the n samples its
    text and its length in tokens (= steps). ``hold`` maps a request-id prefix to an
    asyncio.Event: such a request's samples stop one token short of the end until the
    event is set. A prompt longer than ``max_model_len`` fails its own request only,
    as vLLM's input check does. Every request is recorded in ``requests`` (join and
    finish step), every abort in ``aborted``.
    """

    def __init__(self, args: FakeEngineArgs, tokenizer: Any, script: Script, step_s: float = 0.005):
        self.args = args
        self.tokenizer = tokenizer
        self.script = script
        self.step_s = step_s
        self.step = 0
        self.hold: dict[str, asyncio.Event] = {}
        self.requests: dict[str, _Running] = {}
        self.waiting: list[_Running] = []
        self.running: list[_Running] = []
        self.aborted: list[str] = []
        self.batch_sizes: list[int] = []
        self._stepper: asyncio.Task | None = None
        self.shut_down = False

    @classmethod
    def factory(cls, tokenizer: Any, script: Script, **kw: Any) -> Any:
        """What the backend calls as ``AsyncLLM.from_engine_args`` (``instances`` keeps what it built)."""

        class Built:
            instances: list[FakeAsyncLLM] = []

            @staticmethod
            def from_engine_args(args: FakeEngineArgs) -> FakeAsyncLLM:
                engine = cls(args, tokenizer, script, **kw)
                Built.instances.append(engine)
                return engine

        return Built

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.step_s)
            self.step += 1
            for r in self.waiting:  # requests that arrived since the last step join now
                r.joined_step = self.step
            self.running += self.waiting
            self.waiting = []
            self.batch_sizes.append(len(self.running))
            for r in list(self.running):
                held = any(r.request_id.startswith(p) and not e.is_set() for p, e in self.hold.items())
                done = True
                for i, (_, length) in enumerate(r.samples):
                    if r.generated[i] < length - (1 if held else 0):
                        r.generated[i] += 1
                    done = done and r.generated[i] >= length
                if done:
                    r.finished_step = self.step
                    self.running.remove(r)
                    outputs = [FakeCompletionOutput(i, text, list(range(n)), "stop") for i, (text, n) in enumerate(r.samples)]
                    r.out.put_nowait(FakeRequestOutput(r.request_id, r.prompt_token_ids, outputs))

    async def generate(self, prompt: dict, sampling_params: FakeSamplingParams, request_id: str):
        assert sampling_params.output_kind == FINAL_ONLY
        assert set(prompt) == {"prompt_token_ids"}
        ids = prompt["prompt_token_ids"]
        max_len = self.args.kwargs.get("max_model_len")
        if max_len is not None and len(ids) > max_len:
            raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model length of {max_len}.")
        if self._stepper is None:
            self._stepper = asyncio.get_running_loop().create_task(self._run())
        samples = self.script(request_id, ids, sampling_params)
        assert len(samples) == sampling_params.n
        r = _Running(request_id, ids, samples, asyncio.Queue(), generated=[0] * len(samples))
        self.requests[request_id] = r
        self.waiting.append(r)
        try:
            yield await r.out.get()
        except asyncio.CancelledError:
            await self.abort(request_id)  # as AsyncLLM does for a cancelled stream
            raise

    async def abort(self, request_id: Any) -> None:
        for rid in [request_id] if isinstance(request_id, str) else list(request_id):
            self.aborted.append(rid)
            self.running = [r for r in self.running if r.request_id != rid]
            self.waiting = [r for r in self.waiting if r.request_id != rid]

    def shutdown(self) -> None:
        self.shut_down = True
        if self._stepper is not None:
            self._stepper.cancel()


def make_backend(tokenizer: Any, script: Script, **kw: Any) -> tuple[VLLMBackend, Any]:
    engine = FakeAsyncLLM.factory(tokenizer, script)
    backend = VLLMBackend(
        "some/model", engine_class=engine, engine_args_class=FakeEngineArgs, sampling_params_class=FakeSamplingParams,
        final_only=FINAL_ONLY, **kw,
    )
    return backend, engine


def by_request(lengths: dict[str, int], text: str = "x") -> Script:
    """Each sample of a request whose id starts with a key is ``lengths[key]`` tokens long."""

    def script(request_id: str, ids: list[int], params: FakeSamplingParams) -> list[tuple[str, int]]:
        n = next(v for k, v in lengths.items() if request_id.startswith(k))
        return [(f"{text}{i}", n) for i in range(params.n)]

    return script


def ask(text: str) -> list[Message]:
    return [Message(role="system", content="You write Python."), Message(role="user", content=text)]


async def test_engine_args_carry_the_documented_knobs_and_prefix_caching(tokenizer):
    backend, engine = make_backend(
        tokenizer, by_request({"": 1}), tensor_parallel_size=2, data_parallel_size=4, max_model_len=4096,
        gpu_memory_utilization=0.8,
    )
    await backend.start()
    kwargs = engine.instances[0].args.kwargs
    assert kwargs["model"] == "some/model" and kwargs["enable_prefix_caching"] is True
    assert (kwargs["tensor_parallel_size"], kwargs["data_parallel_size"]) == (2, 4)
    assert (kwargs["max_model_len"], kwargs["gpu_memory_utilization"]) == (4096, 0.8)
    assert backend.provenance()["data_parallel_size"] == 4
    await backend.close()
    assert engine.instances[0].shut_down
    # A single replica leaves the setting to the engine (older vLLM releases lack it).
    single, built = make_backend(tokenizer, by_request({"": 1}))
    await single.start()
    assert "data_parallel_size" not in built.instances[0].args.kwargs
    await single.close()


async def test_a_request_submitted_while_others_run_joins_them_and_returns_first(tokenizer):
    backend, built = make_backend(tokenizer, by_request({"long": 400, "short": 5}))
    await backend.start()
    engine = built.instances[0]
    long = asyncio.create_task(backend.generate(ask("a long one"), SamplingParams(n=4), "long"))
    while engine.step < 10:  # the long request is well under way
        await asyncio.sleep(0.005)
    short = await backend.generate(ask("a short one"), SamplingParams(n=2), "short")
    assert not long.done()  # the short request came back while the long one still runs
    (rl,) = [r for rid, r in engine.requests.items() if rid.startswith("long")]
    (rs,) = [r for rid, r in engine.requests.items() if rid.startswith("short")]
    # It joined the running batch at the next step, not after the long request.
    assert rl.joined_step < rs.joined_step and rl.finished_step == -1  # the long one still generates
    assert rs.finished_step - rs.joined_step == 5 - 1
    assert max(engine.batch_sizes) == 2
    assert [c.text for c in short] == ["x0", "x1"] and all(c.completion_tokens == 5 for c in short)
    completions = await long
    assert rl.finished_step > rs.finished_step and len(completions) == 4
    await backend.close()


async def test_n_samples_come_from_one_request_with_the_chat_template_applied(tokenizer):
    seen: list[tuple[list[int], FakeSamplingParams]] = []

    def script(request_id, ids, params):
        seen.append((ids, params))
        return [(f"sample {i}", 3 + i) for i in range(params.n)]

    backend, _ = make_backend(tokenizer, script)
    await backend.start()
    messages = ask("Flip the grid.")
    completions = await backend.generate(messages, SamplingParams(n=3, temperature=0.7, max_tokens=99, seed=5, stop=["```\n"]), "t/r0/q0")
    [(ids, params)] = seen  # one request for the three samples: one prefill, shared
    assert (params.n, params.temperature, params.max_tokens, params.seed, params.stop) == (3, 0.7, 99, 5, ["```\n"])
    text = tokenizer.apply_chat_template([m.model_dump() for m in messages], tokenize=False, add_generation_prompt=True)
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert backend.count_tokens(messages) == len(ids)
    assert [c.text for c in completions] == ["sample 0", "sample 1", "sample 2"]
    assert [c.completion_tokens for c in completions] == [3, 4, 5]
    assert all(c.prompt_tokens == len(ids) and c.finish_reason == "stop" for c in completions)
    # A prefill (the opening of the code block) is continued, not closed.
    prefilled = [*messages, Message(role="assistant", content="```python\ndef transform(grid):\n")]
    await backend.generate(prefilled, SamplingParams(), "t/r0/q1")
    assert tokenizer.decode(seen[-1][0]).endswith("```python\ndef transform(grid):\n")
    await backend.close()


async def test_greedy_samples_are_generated_once_and_copied(tokenizer):
    backend, built = make_backend(tokenizer, by_request({"": 2}, text="g"))
    await backend.start()
    completions = await backend.generate(ask("g"), SamplingParams(n=3, temperature=0.0), "g")
    (r,) = built.instances[0].requests.values()
    assert len(r.samples) == 1 and [c.text for c in completions] == ["g0"] * 3
    await backend.close()


async def test_a_cancelled_caller_aborts_its_request_in_the_engine(tokenizer):
    backend, built = make_backend(tokenizer, by_request({"doomed": 10_000, "other": 3}))
    await backend.start()
    engine = built.instances[0]
    doomed = asyncio.create_task(backend.generate(ask("never finishes"), SamplingParams(n=2), "doomed"))
    while not engine.running:
        await asyncio.sleep(0.005)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await asyncio.sleep(0.05)
    assert any(rid.startswith("doomed") for rid in engine.aborted)
    assert not engine.running  # its slot in the batch is free
    assert len(await backend.generate(ask("next"), SamplingParams(), "other")) == 1
    await backend.close()


async def test_a_prompt_too_long_fails_only_its_own_request(tokenizer):
    backend, _ = make_backend(tokenizer, by_request({"": 3}), max_model_len=60)
    await backend.start()
    good, bad = await asyncio.gather(
        backend.generate(ask("fine"), SamplingParams(), "ok"),
        backend.generate(ask("long " * 200), SamplingParams(), "bad"),
        return_exceptions=True,
    )
    assert [c.text for c in good] == ["x0"]
    assert isinstance(bad, BackendError) and "maximum model length" in str(bad) and "bad#" in str(bad)
    await backend.close()


async def test_close_fails_requests_still_running_instead_of_leaving_them_hanging(tokenizer):
    backend, built = make_backend(tokenizer, by_request({"": 10_000}))
    await backend.start()
    running = [asyncio.create_task(backend.generate(ask(f"r{i}"), SamplingParams(), f"r{i}")) for i in range(3)]
    while len(built.instances[0].running) < 3:
        await asyncio.sleep(0.005)
    await backend.close()
    for task in running:
        with pytest.raises(BackendError, match="closed"):
            await asyncio.wait_for(task, 5)
    assert len(built.instances[0].aborted) >= 3 and built.instances[0].shut_down


async def test_missing_vllm_is_a_clear_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(BackendError, match=r"pip install 'arcsynth\[vllm\]'"):
        await VLLMBackend("some/model").start()


async def test_generate_and_count_tokens_before_start_are_errors(tokenizer):
    backend, _ = make_backend(tokenizer, by_request({"": 1}))
    with pytest.raises(BackendError, match="before start"):
        await backend.generate(ask("x"), SamplingParams(), "x")
    with pytest.raises(BackendError, match="start"):
        backend.count_tokens(ask("x"))


def test_importing_the_backends_imports_neither_vllm_nor_torch():
    code = (
        "import sys, agent.backends, agent.backends.vllm_inprocess, agent.backends.openai_server, agent.backends.hf_local\n"
        "from agent.backends import ModelConfig, make_backend\n"
        "make_backend(ModelConfig(backend='vllm', model='m', data_parallel_size=2))\n"
        "assert 'vllm' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the solve loop on the continuously batching engine ------------------------------------

FLIPUD = "```python\ndef transform(grid):\n    return grid[::-1]\n```"  # solves 68b16354
WRONG = "```python\ndef transform(grid):\n    return grid.T\n```"


async def test_programs_are_verified_while_the_longest_completion_is_still_generating(tokenizer, tmp_path):
    """Task 68b16354's completions are short, 3c9b0459's very long: the short task's programs
    come back, are verified in the sandbox and recorded while the long request still runs."""
    from agent.config import BudgetConfig, PromptConfig, RunConfig, SamplingConfig
    from agent.rundir import Recorder, RunDir
    from agent.runner import run_tasks
    from arcsynth.datasets import load_dataset
    from sandbox import Sandbox, SandboxConfig

    def script(request_id, ids, params):
        if request_id.startswith("68b16354"):
            return [(FLIPUD, 20), (WRONG, 30)][: params.n]
        return [(WRONG, 600)] * params.n

    backend, built = make_backend(tokenizer, script)
    ds = load_dataset("arc1:train")
    tasks = [ds.get("3c9b0459"), ds.get("68b16354")]
    config = RunConfig(
        seed=1, concurrency=2,
        sampling=SamplingConfig(samples_per_prompt=2, max_tokens=1000),
        prompt=PromptConfig(max_prompt_tokens=6000),
        budget=BudgetConfig(rounds=1, first_prompts=1, stop_after_passing=None),
    )
    await backend.start()
    engine = built.instances[0]
    # The long request is held one token short of its end until the short task is done, or
    # for at most 60 s: a backend that waited for the whole batch would hit that limit.
    release = engine.hold.setdefault("3c9b0459", asyncio.Event())
    verdict_steps: dict[str, int] = {}

    def listen(event: Any) -> None:
        if event.event == "verdict":
            verdict_steps[event.program_id] = engine.step
        if event.event == "task_result" and event.task_id == "68b16354":
            release.set()

    async def deadline() -> None:
        await asyncio.sleep(60)
        release.set()

    timer = asyncio.create_task(deadline())
    run_dir = RunDir.create(tmp_path / "run")
    try:
        with Recorder(run_dir) as recorder:
            recorder.add_listener(listen)
            async with Sandbox(SandboxConfig()) as sandbox:
                summary = await run_tasks(tasks, config, backend, sandbox, recorder)
    finally:
        timer.cancel()
        await backend.close()
    (long_request,) = [r for rid, r in engine.requests.items() if rid.startswith("3c9b0459")]
    short_verdicts = [s for pid, s in verdict_steps.items() if pid.startswith("68b16354")]
    assert len(short_verdicts) == 2
    assert max(short_verdicts) < long_request.finished_step
    outcomes = {o.task_id: o for o in summary.outcomes}
    assert outcomes["68b16354"].solved_train and not outcomes["3c9b0459"].solved_train
    assert verdict_steps.keys() >= {"3c9b0459/r0/q0/c0"}  # the long one is verified too, once it is done
