"""Prompt building and fitting to a token budget, on real ARC tasks."""

from __future__ import annotations

import pytest

from prompts import (
    ENCODINGS,
    Parent,
    PromptTemplateError,
    PromptTooLong,
    UnknownEncoding,
    build_first_prompt,
    build_refine_prompt,
)
from agent.backends.base import Message
from sandbox.verdict import CandidateVerdict, PairVerdict


def chars_div_4_token_count(messages: list[Message]) -> int:
    """Test double for a tokenizer: about four characters per token."""
    return sum(len(m.content) for m in messages) // 4


BIG = 10**6
CONTRACT_LINE = "Answer with exactly one ```python fenced code block"


def text_of(prompt) -> str:
    return "\n".join(m.content for m in prompt.messages)


def first(task, **kw):
    kw.setdefault("max_prompt_tokens", BIG)
    kw.setdefault("count_tokens", chars_div_4_token_count)
    return build_first_prompt(task, **kw)


def refine(task, parents, **kw):
    kw.setdefault("max_prompt_tokens", BIG)
    kw.setdefault("count_tokens", chars_div_4_token_count)
    return build_refine_prompt(task, parents, **kw)


def verdict_with(task, passing: set[int]) -> CandidateVerdict:
    """Pairs in `passing` pass; the others return the input unchanged (wrong)."""
    train = []
    for i, p in enumerate(task.train):
        if i in passing:
            train.append(PairVerdict(status="pass", output=p.output.tolist(), shape_match=True, cell_accuracy=1.0))
        else:
            same = p.input.shape == p.output.shape
            acc = float((p.input == p.output).mean()) if same else None
            train.append(PairVerdict(status="wrong", output=p.input.tolist(), expected_shape=p.output.shape, shape_match=same, cell_accuracy=acc))
    return CandidateVerdict(train=train, test=[PairVerdict(status="unchecked", output=task.test[0].input.tolist())], isolation=[])


# --- first prompts


def test_first_prompt_shows_every_train_pair_and_the_test_input(arc_task):
    task = arc_task("05f2a901")
    p = first(task)
    text = text_of(p)
    assert [m.role for m in p.messages] == ["system", "user"]
    for pair in task.train:
        assert ENCODINGS["spaced"].encode(pair.input) in text
        assert ENCODINGS["spaced"].encode(pair.output) in text
    assert ENCODINGS["spaced"].encode(task.test[0].input) in text
    assert ENCODINGS["spaced"].encode(task.test[0].output) not in text  # never the answer
    assert p.train_pairs_shown == [0, 1, 2] and p.test_inputs_shown and p.shrink_steps == []
    assert p.prompt_tokens == chars_div_4_token_count(p.messages)


def test_contract_is_stated_once(arc_task):
    task = arc_task("05f2a901")
    for system_message in (True, False):
        text = text_of(first(task, system_message=system_message))
        assert text.count(CONTRACT_LINE) == 1
        assert text.count("def transform(grid)") == 1
    assert text_of(refine(task, [Parent(source="def transform(grid):\n    return grid", verdict=verdict_with(task, set()))])).count(CONTRACT_LINE) == 1


def test_scipy_is_offered_only_when_available(arc_task):
    task = arc_task("05f2a901")
    assert "scipy.ndimage" in text_of(first(task, scipy_available=True))
    assert "scipy" not in text_of(first(task, scipy_available=False))


def test_test_inputs_can_be_hidden(arc_task):
    task = arc_task("05f2a901")
    p = first(task, show_test_inputs=False)
    assert ENCODINGS["spaced"].encode(task.test[0].input) not in text_of(p)
    assert not p.test_inputs_shown


def test_several_test_inputs_are_numbered(arc_task):
    task = arc_task("239be575")  # two test inputs
    text = text_of(first(task))
    assert "## Test input 1" in text and "## Test input 2" in text


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_chosen_encoding_is_used(arc_task, name):
    task = arc_task("007bbfb7")
    p = first(task, encoding=name)
    assert p.encoding == name
    assert ENCODINGS[name].encode(task.train[2].output) in text_of(p)
    assert ENCODINGS[name].description in text_of(p)


def test_unknown_encoding_is_a_clear_error(arc_task):
    with pytest.raises(UnknownEncoding, match="'hex'"):
        first(arc_task("007bbfb7"), encoding="hex")


def test_shuffle_is_seeded_and_shows_pairs_in_the_recorded_order(arc_task):
    task = arc_task("0a938d79")  # 4 train pairs of different sizes
    a, b = first(task, shuffle_seed=7), first(task, shuffle_seed=7)
    assert a.messages == b.messages
    orders = {tuple(first(task, shuffle_seed=s).train_pairs_shown) for s in range(8)}
    assert len(orders) > 1 and all(sorted(o) == [0, 1, 2, 3] for o in orders)
    text = text_of(a)
    positions = [text.index(ENCODINGS["spaced"].encode(task.train[i].output)) for i in a.train_pairs_shown]
    assert positions == sorted(positions)


# --- fitting the budget


def test_shrinking_goes_compact_then_hides_tests_then_drops_largest_pairs(arc_task):
    task = arc_task("0a938d79")  # pair sizes (cells in + out): 500, 322, 396, 384
    full = first(task).prompt_tokens
    compact_no_tests = first(task, encoding="digits", show_test_inputs=False)
    # Just too small for the compact prompt without test inputs: one pair must go.
    p = first(task, max_prompt_tokens=compact_no_tests.prompt_tokens - 1)
    assert p.prompt_tokens <= compact_no_tests.prompt_tokens - 1 < full
    assert p.prompt_tokens == chars_div_4_token_count(p.messages)
    assert [s.split(" (")[0] for s in p.shrink_steps] == [
        "encoding spaced -> digits",
        "hid the 1 test input(s)",
        "dropped train pair 0",  # the largest (10x25 -> 10x25)
    ]
    assert p.encoding == "digits" and not p.test_inputs_shown
    assert p.train_pairs_shown == [1, 2, 3]
    assert "(1 more example not shown for space.)" in text_of(p)
    assert f"was {full} tokens" in p.shrink_steps[0]


def test_shrinking_keeps_at_least_one_pair_then_gives_up(arc_task):
    task = arc_task("0a938d79")
    compact_all_pairs = first(task, encoding="digits", show_test_inputs=False)
    with pytest.raises(PromptTooLong) as err:
        first(task, max_prompt_tokens=300)
    e = err.value
    assert e.task_id == "0a938d79" and e.budget == 300 and e.tokens > 300
    assert e.steps[-1].startswith("dropped train pair") and len([s for s in e.steps if "dropped train pair" in s]) == 3
    assert "1 train pair(s)" in e.reason and "0a938d79" in str(e)
    assert e.to_record()["steps"] == e.steps
    assert compact_all_pairs.prompt_tokens > e.tokens  # pairs were dropped after the compact step


def test_budget_must_be_positive(arc_task):
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        first(arc_task("007bbfb7"), max_prompt_tokens=0)


# --- refinement prompts


def test_refine_prompt_shows_parents_best_first_with_source_and_feedback(arc_task):
    task = arc_task("0a938d79")
    parents = [
        Parent(source="def transform(grid):\n    return grid  # worst", verdict=verdict_with(task, set())),
        Parent(source="def transform(grid):\n    return grid  # best", verdict=verdict_with(task, {0, 1})),
        Parent(source="def transform(grid):\n    return grid  # middle", verdict=verdict_with(task, {2})),
    ]
    p = refine(task, parents, max_parents=2)
    text = text_of(p)
    assert p.kind == "refine" and p.parents_shown == [1, 2] and p.feedback_detail == "full"
    assert "# best" in text and "# middle" in text and "# worst" not in text
    assert text.index("# best") < text.index("# middle")
    assert "## Earlier program 1: passed 2 of 4 train examples" in text
    assert "## Earlier program 2: passed 1 of 4 train examples" in text
    assert "Example 3: wrong output:" in text and "Example 1: correct." in text


def test_a_focus_details_only_that_batch_of_failures_and_crossover_asks_to_combine(arc_task):
    task = arc_task("0a938d79")
    a = Parent(source="def transform(grid):\n    return grid  # a", verdict=verdict_with(task, {0}))
    b = Parent(source="def transform(grid):\n    return grid  # b", verdict=verdict_with(task, {1}))
    p = refine(task, [a, b], max_parents=2, focus=[2])
    text = text_of(p)
    # Pair 2 (Example 3, pairs in task order) is detailed for each parent; pair 3 gets one line.
    assert text.count("Example 3: wrong output:") == 2 and text.count("Cell diff") == 2
    assert text.count("Example 4: wrong output:") == 2 and "Combine their ideas" not in text
    whole = refine(task, [a, b], max_parents=2)
    assert text_of(whole).count("Cell diff") == 6
    crossed = refine(task, [a, b], max_parents=2, crossover=True)
    assert "Combine their ideas into one program" in text_of(crossed)
    # Crossover needs two programs shown: with one, the prompt is a plain refinement.
    assert "Combine their ideas" not in text_of(refine(task, [a, b], max_parents=1, crossover=True))


def test_refine_shrinks_feedback_then_parents_then_summary(arc_task):
    task = arc_task("0a938d79")
    # Parent k passes pairs 0..k, so the best is the last one.
    parents = [Parent(source=f"def transform(grid):\n    return grid  # v{k}", verdict=verdict_with(task, set(range(k + 1)))) for k in range(3)]
    full = refine(task, parents, max_parents=3)
    diff_one = refine(task, parents, max_parents=1, feedback_detail="diff")
    p = refine(task, parents, max_parents=3, max_prompt_tokens=diff_one.prompt_tokens - 1)
    assert [s.split(" (")[0] for s in p.shrink_steps] == [
        "feedback detail full -> diff",
        "dropped earlier program 3",
        "dropped earlier program 2",
        "feedback detail diff -> summary",
    ]
    assert full.parents_shown == [2, 1, 0]
    assert p.parents_shown == [2] and p.feedback_detail == "summary"
    assert p.prompt_tokens < diff_one.prompt_tokens < full.prompt_tokens
    assert "Cell diff" not in text_of(p) and "# v2" in text_of(p) and "# v0" not in text_of(p)


def test_refine_source_with_fences_stays_one_block(arc_task):
    task = arc_task("007bbfb7")
    src = 'def transform(grid):\n    """Example:\n    ```\n    x\n    ```"""\n    return grid'
    text = text_of(refine(task, [Parent(source=src, verdict=verdict_with(task, set()))]))
    assert f"````python\n{src}\n````" in text


def test_refine_needs_a_parent_matching_the_task(arc_task):
    task = arc_task("007bbfb7")
    with pytest.raises(ValueError, match="at least one"):
        refine(task, [])
    other = verdict_with(arc_task("0a938d79"), set())
    with pytest.raises(ValueError, match="007bbfb7"):
        refine(task, [Parent(source="def transform(g): return g", verdict=other)])


# --- templates


def test_templates_load_from_the_installed_package():
    from importlib import resources

    for name in ("system.j2", "contract.j2", "examples.j2", "first.j2", "refine.j2"):
        assert resources.files("prompts").joinpath("templates", name).is_file()


def test_user_templates_override_by_file_name(arc_task, tmp_path):
    (tmp_path / "first.j2").write_text("CUSTOM {{ examples|length }} examples\n{% include 'examples.j2' %}")
    task = arc_task("007bbfb7")
    p = first(task, templates_dir=tmp_path)
    assert p.messages[1].content.startswith("CUSTOM 5 examples")
    assert ENCODINGS["spaced"].encode(task.train[0].input) in p.messages[1].content  # packaged partial still used
    assert p.messages[0].content == first(task).messages[0].content  # system.j2 not overridden


def test_broken_user_template_names_file_and_line(arc_task, tmp_path):
    (tmp_path / "first.j2").write_text("line one\n{% for x in %}\n")
    with pytest.raises(PromptTemplateError, match=r"first\.j2, line 2"):
        first(arc_task("007bbfb7"), templates_dir=tmp_path)


def test_misspelt_variable_in_user_template_is_an_error(arc_task, tmp_path):
    (tmp_path / "first.j2").write_text("{{ exmaples }}")
    with pytest.raises(PromptTemplateError, match="exmaples"):
        first(arc_task("007bbfb7"), templates_dir=tmp_path)


def test_missing_templates_dir_is_a_clear_error(arc_task, tmp_path):
    with pytest.raises(PromptTemplateError, match="does not exist"):
        first(arc_task("007bbfb7"), templates_dir=tmp_path / "nope")


# --- the real tokenizer


@pytest.mark.slow
def test_prompt_tokens_are_counted_with_the_real_tokenizer(arc_task, smollm2_count_tokens, smollm2_tokenizer):
    task = arc_task("3631a71a")  # 30x30 grids: about 10k SmolLM2 tokens in full
    full = build_first_prompt(task, max_prompt_tokens=BIG, count_tokens=smollm2_count_tokens)
    ids = smollm2_tokenizer.apply_chat_template([m.model_dump() for m in full.messages], tokenize=True, add_generation_prompt=True)
    assert full.prompt_tokens == len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert full.prompt_tokens > 8192 - 1024

    fitted = build_first_prompt(task, max_prompt_tokens=8192 - 1024, count_tokens=smollm2_count_tokens)
    assert fitted.prompt_tokens <= 8192 - 1024
    assert fitted.prompt_tokens == smollm2_count_tokens(fitted.messages)
    assert fitted.shrink_steps and fitted.shrink_steps[0].startswith("encoding spaced -> digits")
    assert len(fitted.train_pairs_shown) >= 1


@pytest.mark.slow
def test_refine_prompt_fits_a_real_budget(arc_task, smollm2_count_tokens):
    task = arc_task("0a938d79")
    parents = [Parent(source=f"def transform(grid):\n    return grid  # v{k}", verdict=verdict_with(task, {k})) for k in range(3)]
    p = build_refine_prompt(task, parents, max_parents=3, max_prompt_tokens=3000, count_tokens=smollm2_count_tokens)
    assert p.prompt_tokens <= 3000 and p.shrink_steps
    with pytest.raises(PromptTooLong) as err:
        build_refine_prompt(task, parents, max_prompt_tokens=200, count_tokens=smollm2_count_tokens)
    assert err.value.tokens > 200 and err.value.steps


def test_code_style_asks_for_the_program_only_and_a_prefill_starts_the_reply(arc_task):
    task = arc_task("05f2a901")
    prefill = "```python\ndef transform(grid):\n"
    explain = first(task)
    code = first(task, code_only=True, prefill=prefill)
    assert "Describe the rule" in text_of(explain) and "Describe the rule" not in text_of(code)
    assert "program only" in code.messages[-2].content
    assert code.messages[-1].role == "assistant" and code.messages[-1].content == prefill
    assert explain.messages[-1].role == "user"
    parent = Parent(source="def transform(grid):\n    return grid", verdict=verdict_with(task, set()))
    r = refine(task, [parent], code_only=True, prefill=prefill)
    assert "corrected program only" in r.messages[-2].content and r.messages[-1].content == prefill
