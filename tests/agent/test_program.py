"""Program extraction from model replies, and source normalisation for dedup."""

from __future__ import annotations

import numpy as np
import pytest

from agent.program import Extraction, extract_program, normalise_source, program_hash

GRID = np.array([[1, 2], [3, 4]])


def run(extraction: Extraction, grid=GRID):
    """Execute an extracted program (trusted test code, not the sandbox) and call transform.

    The namespace starts empty, as in the sandbox: the program must import what it uses.
    """
    assert extraction.status == "ok", extraction.detail
    namespace: dict = {}
    exec(compile(extraction.source, "<program>", "exec"), namespace)
    return np.asarray(namespace["transform"](grid))


FLIP = "def transform(grid):\n    return grid[::-1]"


def test_fenced_python_block_among_prose():
    reply = f"The rule flips the grid vertically.\n\n```python\nimport numpy as np\n{FLIP}\n```\n\nThis works for all examples."
    e = extract_program(reply)
    assert e.status == "ok" and e.source == f"import numpy as np\n{FLIP}"
    assert np.array_equal(run(e), GRID[::-1])


@pytest.mark.parametrize("label", ["", "py", "Python", "python3"])
def test_unlabelled_and_variant_labels_are_code(label):
    e = extract_program(f"```{label}\n{FLIP}\n```")
    assert np.array_equal(run(e), GRID[::-1])


def test_block_indented_inside_a_list_item():
    reply = "1. The program:\n   ```python\n   def transform(grid):\n       return grid * 3\n   ```\n2. Done."
    assert np.array_equal(run(extract_program(reply)), GRID * 3)


def test_fence_closed_on_the_last_code_line():
    reply = "```python\ndef transform(grid):\n    return grid * 4```\nThat multiplies by four."
    assert np.array_equal(run(extract_program(reply)), GRID * 4)


def test_blocks_labelled_as_other_languages_are_not_code():
    reply = "Grid:\n```text\n0 1\n1 0\n```\n```json\n[[0, 1]]\n```"
    e = extract_program(reply)
    assert e.status == "no_code" and e.source is None
    assert "json" in e.detail and "text" in e.detail


def test_last_block_defining_transform_wins():
    reply = (
        "First try:\n```python\ndef transform(grid):\n    return grid\n```\n"
        "Wait, it must be transposed:\n```python\ndef transform(grid):\n    return grid.T\n```"
    )
    e = extract_program(reply)
    assert np.array_equal(run(e), GRID.T)
    assert "block 2 of 2" in e.detail


def test_helper_blocks_the_transform_uses_are_merged():
    reply = (
        "```python\nimport numpy as np\n\ndef mirror(g):\n    return np.fliplr(g)\n```\n"
        "```python\nprint(transform(np.zeros((2, 2))))  # a usage example, not needed\nunused = 1\n```\n"
        "```python\ndef transform(grid):\n    return mirror(grid) + 1\n```"
    )
    e = extract_program(reply)
    assert np.array_equal(run(e), np.fliplr(GRID) + 1)
    assert "Merged 1 helper block" in e.detail
    assert "unused" not in e.source  # a block it does not need is left out


def test_a_block_with_another_transform_is_never_merged():
    reply = (
        "```python\ndef helper(g):\n    return g * 2\n\ndef transform(grid):\n    return helper(grid)\n```\n"
        "```python\ndef transform(grid):\n    return helper(grid) + 1\n```"
    )
    e = extract_program(reply)
    assert e.status == "ok"
    assert e.source == "def transform(grid):\n    return helper(grid) + 1"


def test_code_inside_think_sections_is_ignored():
    reply = (
        "<think>\nMaybe:\n```python\ndef transform(grid):\n    return grid * 0\n```\nNo.\n</think>\n"
        "```python\ndef transform(grid):\n    return grid + 1\n```"
    )
    e = extract_program(reply)
    assert np.array_equal(run(e), GRID + 1)
    assert "reasoning" in e.detail


def test_unterminated_think_section_is_ignored():
    answer = "```python\ndef transform(grid):\n    return grid + 1\n```"
    draft = "<think>\nLet me revise:\n```python\ndef transform(grid):\n    return grid * 0\n```"
    e = extract_program(answer + "\n" + draft)
    assert np.array_equal(run(e), GRID + 1)
    only_reasoning = extract_program(draft)
    assert only_reasoning.status == "no_code" and "reasoning" in only_reasoning.detail


def test_reasoning_opened_by_the_chat_template_ends_at_the_closing_tag():
    reply = "```python\ndef transform(grid):\n    return grid * 0\n```\n</think>\nFinal:\n```python\ndef transform(grid):\n    return grid - 1\n```"
    assert np.array_equal(run(extract_program(reply)), GRID - 1)


def test_bare_code_without_fences():
    e = extract_program(f"import numpy as np\n\n{FLIP}\n")
    assert np.array_equal(run(e), GRID[::-1])
    e2 = extract_program(f"Here is my solution:\n{FLIP}\nThis flips the rows.\nIt works.")
    assert np.array_equal(run(e2), GRID[::-1])
    assert "bare code from line 2" in e2.detail


def test_bare_code_with_a_syntax_error_in_the_body_is_not_trimmed():
    e = extract_program("def transform(grid):\n    x = grid[\n    return x\n")
    assert e.status == "syntax_error" and "line 2" in e.detail


@pytest.mark.parametrize("name,signature", [("solve", "grid"), ("transform_grid", "g"), ("solution", "input_grid")])
def test_misnamed_single_function_is_accepted_as_transform(name, signature):
    e = extract_program(f"```python\ndef {name}({signature}):\n    return {signature}.T\n```")
    assert e.renamed_from == name and f"used `{name}` as transform" in e.detail
    assert np.array_equal(run(e), GRID.T)


def test_any_single_one_argument_function_is_accepted():
    e = extract_program("```python\ndef rearrange(cells):\n    return cells[:, ::-1]\n```")
    assert e.renamed_from == "rearrange"
    assert np.array_equal(run(e), GRID[:, ::-1])


def test_misnamed_entry_among_helpers_is_chosen_by_name():
    reply = "```python\ndef flip(g):\n    return g[::-1]\n\ndef solve(grid):\n    return flip(grid) * 2\n```"
    e = extract_program(reply)
    assert e.renamed_from == "solve"
    assert np.array_equal(run(e), GRID[::-1] * 2)


def test_ambiguous_functions_without_transform():
    e = extract_program("```python\ndef left(g):\n    return g\n\ndef right(g):\n    return g\n```")
    assert e.status == "no_transform" and e.source is None
    assert "left, right" in e.detail


def test_code_without_any_function_has_no_transform():
    e = extract_program("```python\nresult = [[1, 2]]\nprint(result)\n```")
    assert e.status == "no_transform"


def test_method_transform_is_not_a_top_level_transform():
    e = extract_program("```python\nclass Solver:\n    def transform(self, grid):\n        return grid\n```")
    assert e.status == "no_transform"


def test_syntax_error_reports_line_and_message():
    reply = "```python\ndef transform(grid):\n    h = len(grid)\n    return [row for row in grid if]\n```"
    e = extract_program(reply)
    assert e.status == "syntax_error"
    assert e.detail.startswith("SyntaxError at line 3:")
    assert "return [row for row in grid if]" in e.detail
    assert e.source.startswith("def transform(grid):")


def test_truncated_completion_is_a_syntax_error_saying_so():
    reply = "Plan: tile the grid.\n```python\nimport numpy as np\n\ndef transform(grid):\n    out = np.zeros((9, 9), dtype=int)\n    for r in range("
    e = extract_program(reply, finish_reason="length")
    assert e.status == "syntax_error"
    assert "line 5" in e.detail
    assert "not closed" in e.detail and "token limit" in e.detail


def test_earlier_valid_block_is_used_when_a_later_one_is_cut_off():
    reply = f"```python\n{FLIP}\n```\nImproved:\n```python\ndef transform(grid):\n    return np.rot90(grid,"
    e = extract_program(reply, finish_reason="length")
    assert np.array_equal(run(e), GRID[::-1])
    assert "later block (2)" in e.detail and "did not parse" in e.detail


@pytest.mark.parametrize("reply", ["", "   \n\n", "I cannot solve this puzzle.", "The answer is:\n1 2\n3 4"])
def test_empty_or_prose_reply_has_no_code(reply):
    e = extract_program(reply)
    assert e.status == "no_code" and e.source is None and e.detail


@pytest.mark.parametrize(
    "reply",
    [None, 42, "```python\n" + "(" * 5000 + "\n```", "```python\ndef transform(g):\n    return g\x00\n```", "```\n```", "``````", "<think>"],
)
def test_never_raises(reply):
    e = extract_program(reply)
    assert isinstance(e, Extraction)
    assert e.status in ("ok", "no_code", "no_transform", "syntax_error")


def test_numpy_import_is_added_when_the_program_relies_on_np():
    e = extract_program("```python\ndef transform(grid):\n    return np.rot90(grid)\n```")
    assert e.source.startswith("import numpy as np\n")
    assert "Added `import numpy as np`" in e.detail
    assert np.array_equal(run(e), np.rot90(GRID))
    already = extract_program("```python\nimport numpy as np\ndef transform(grid):\n    return np.rot90(grid)\n```")
    assert already.source.count("import numpy") == 1 and "Added" not in already.detail


def test_windows_line_endings():
    e = extract_program("```python\r\ndef transform(grid):\r\n    return grid + 2\r\n```\r\n")
    assert np.array_equal(run(e), GRID + 2)


# --- normalisation and hashing


def test_formatting_comments_and_docstrings_do_not_change_the_hash():
    a = 'def transform(grid):\n    """Flip."""\n    # rows reversed\n    return grid[::-1]\n'
    b = "def transform( grid ):\n\n    return (grid[ : : -1])   # flip\n"
    c = "def transform(grid):\n  return grid[::-1]"
    assert normalise_source(a) == normalise_source(b) == normalise_source(c) == "def transform(grid):\n    return grid[::-1]"
    assert program_hash(a) == program_hash(b) == program_hash(c)


def test_different_programs_hash_differently():
    assert program_hash("def transform(grid):\n    return grid[::-1]") != program_hash("def transform(grid):\n    return grid[:, ::-1]")
    # A string literal that is not a docstring is program behaviour.
    assert program_hash("def transform(grid):\n    x = 'a'\n    return grid") != program_hash("def transform(grid):\n    x = 'b'\n    return grid")


def test_docstring_only_body_stays_valid_python():
    out = normalise_source('def transform(grid):\n    """Only a docstring."""\n')
    assert out == "def transform(grid):\n    pass"


def test_hash_is_16_hex_characters():
    h = program_hash(FLIP)
    assert len(h) == 16 and int(h, 16) >= 0


def test_unparseable_source_falls_back_to_whitespace_normalisation():
    a = "def transform(grid):\n    return grid[\n"
    b = "def transform(grid):   \n\n    return grid[\n\n"
    assert normalise_source(a) == normalise_source(b) == "def transform(grid):\n    return grid["
    assert program_hash(a) == program_hash(b)


def test_example_calls_cut_off_after_transform_are_dropped():
    # A prefilled reply continued by a small model: the function, then example calls
    # that the token limit cuts mid-line.
    reply = (
        "```python\ndef transform(grid):\n    return grid[::-1]\n\n"
        "def helper(x):\n    return x\n\n# Test the function\nprint(transform(np.array([[1, 2], [3"
    )
    e = extract_program(reply, finish_reason="length")
    assert e.status == "ok"
    assert np.array_equal(run(e), GRID[::-1])
    assert "def helper" in e.source and "print(" not in e.source and "# Test" not in e.source
    assert "dropped the unfinished code after transform from line 7" in e.detail.lower()
    assert "token limit" in e.detail


def test_an_unfinished_function_body_is_not_trimmed_into_a_program():
    # The cut-off is inside transform itself (a later unindented line must not make the
    # earlier part pass as a program).
    reply = "```python\ndef transform(grid):\n    out = [\n        row\nfor row in grid\nprint(transform(grid)"
    e = extract_program(reply, finish_reason="length")
    assert e.status == "syntax_error"


# --- hashing what extraction parsed


@pytest.mark.parametrize(
    "reply",
    [
        f"```python\n{FLIP}\n```",
        "```python\ndef transform(grid):\n    return np.rot90(grid)\n```",  # the numpy import is added
        "```python\ndef solve(grid):\n    '''Doc.'''\n    return np.flipud(grid)\n```",  # renamed, and numpy added
        "```python\ndef helper(g):\n    return g[::-1]\n```\n```python\ndef transform(grid):\n    return helper(grid)\n```",
        "```python\nfrom __future__ import annotations\ndef transform(grid):\n    return np.rot90(grid)\n```",
        f"Here is the code:\n{FLIP}\nIt flips the rows.",
    ],
)
def test_source_hash_is_the_hash_of_the_source(reply):
    from agent import program

    program._RECENT_EXTRACTIONS.clear()  # a fresh extraction, with its own parse
    e = extract_program(reply)
    assert e.status == "ok", e.detail
    program._RECENT_HASHES.clear()  # computed from the extraction's own parse, not remembered
    h = e.source_hash()
    program._RECENT_HASHES.clear()
    assert h == program_hash(e.source)


def test_docstrings_of_nested_definitions_are_stripped_wherever_they_are():
    source = (
        "def transform(grid):\n    'doc'\n    class A:\n        'doc'\n        def f(self):\n            'doc'\n            return 1\n"
        "    if grid.size:\n        def g():\n            'doc'\n    else:\n        async def h():\n            'doc'\n"
        "    try:\n        pass\n    except ValueError:\n        def k():\n            'doc'\n    finally:\n        def m():\n            'doc'\n"
        "    for _ in range(1):\n        def n():\n            'doc'\n    match grid.shape:\n        case (1, 1):\n            def p():\n                'doc'\n"
        "    return grid\n"
    )
    out = normalise_source(source)
    assert "doc" not in out
    # g, h, k, m, n and p held only a docstring and keep a statement; the try body had its own pass.
    assert out.count("pass") == 7
    compile(out, "<normal form>", "exec")


def test_a_repeated_reply_is_not_parsed_again_and_gets_its_own_copy(monkeypatch):
    from agent import program

    program._RECENT_EXTRACTIONS.clear()
    program._RECENT_HASHES.clear()
    parses = []
    real_parse = program.ast.parse
    monkeypatch.setattr(program.ast, "parse", lambda *a, **k: parses.append(1) or real_parse(*a, **k))
    reply = "```python\ndef transform(grid):\n    return grid[::-1]\n```"
    first = extract_program(reply)
    h = first.source_hash()
    parsed_once = len(parses)
    assert parsed_once >= 1
    first.detail = "changed by its caller"
    again = extract_program(reply)
    assert len(parses) == parsed_once  # neither extraction nor hashing parsed it again
    assert (again.status, again.source, again.detail) == ("ok", first.source, "")
    assert again.source_hash() == h and len(parses) == parsed_once
    # The finish reason is part of what was seen: a cut-off reply reads differently.
    cut = extract_program("```python\ndef transform(grid):\n    return grid[::-1", finish_reason="length")
    whole = extract_program("```python\ndef transform(grid):\n    return grid[::-1", finish_reason="stop")
    assert "token limit" in cut.detail and "token limit" not in whole.detail


def test_the_memo_of_recent_replies_is_bounded_by_characters():
    from arcsynth.memo import RecentMemo

    memo = RecentMemo(max_chars=80_000)
    for i in range(200):
        memo.put(f"{i}" + "x" * 5000, i, 5000)
        assert memo.chars <= 80_000
    assert 1 <= len(memo) <= 16
    memo.put("y" * 20_000, "huge", 20_000)  # over an eighth of the bound: not kept
    assert memo.get("y" * 20_000) is None
    assert memo.get("199" + "x" * 5000) == 199


def test_prose_without_code_is_not_parsed_and_bare_code_still_is(monkeypatch):
    from agent import program

    program._RECENT_EXTRACTIONS.clear()
    parses = []
    real_parse = program.ast.parse
    monkeypatch.setattr(program.ast, "parse", lambda *a, **k: parses.append(1) or real_parse(*a, **k))
    prose = extract_program("The output mirrors the input. Without more examples I cannot pin down the rule.")
    assert prose.status == "no_code" and parses == []
    for bare in ("transform = lambda grid: grid[::-1]", "def transform(grid):\n    return grid\nThis returns the grid."):
        e = extract_program(bare)
        assert e.status == "ok" and e.source.startswith(bare.split("\n")[0]), e.detail
    # A repeated bare reply is remembered like a fenced one.
    seen = len(parses)
    assert extract_program("transform = lambda grid: grid[::-1]").status == "ok" and len(parses) == seen
