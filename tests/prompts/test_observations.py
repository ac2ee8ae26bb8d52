"""Observations: facts counted from the shown example pairs, stated in the prompt on request."""

from __future__ import annotations

import numpy as np

from arcsynth.task import task_from_json
from prompts import build_first_prompt
from prompts.observations import observations

from test_builder import BIG, chars_div_4_token_count, text_of


def test_a_colour_replacement_is_counted_cell_by_cell(arc_task):
    task = arc_task("c8f0f002")  # every 7 becomes 5
    sevens = sum(int((np.asarray(p.input) == 7).sum()) for p in task.train)
    kept = sum(int(np.asarray(p.input).size) for p in task.train) - sevens
    assert observations(task, range(len(task.train))) == [
        "Each output grid has the same size as its input grid.",
        f"Colour changes from input to output, over all examples: every cell of colour 7 becomes 5 ({sevens} cells).",
        f"{kept} cells keep their colour.",
    ]


def test_many_kinds_of_change_are_summed_up_not_listed(arc_task):
    (line,) = observations(arc_task("74dd1130"), range(4))[1:]  # a transpose moves every colour around
    assert "different ways" in line and "become" not in line


def test_sizes_are_related_when_they_differ(arc_task):
    assert observations(arc_task("a416b8f3"), range(3)) == ["Each output grid is 1 times as tall and 2 times as wide as its input grid."]
    assert observations(arc_task("d10ecb37"), range(3)) == ["Every output grid is 2x2, whatever the input's size."]
    swapped = task_from_json({"train": [{"input": [[1, 2, 3]], "output": [[1], [2], [3]]},
                                        {"input": [[1, 2]], "output": [[2], [1]]}],
                              "test": [{"input": [[4, 5]]}]}, "swapped")
    assert observations(swapped, range(2)) == ["Each output grid's height is its input's width, and its width the input's height."]


def test_only_the_shown_examples_count_and_never_a_test_output():
    def task(test_output):
        return task_from_json({"train": [{"input": [[1, 1]], "output": [[2, 2]]}, {"input": [[3, 1]], "output": [[3, 4]]}],
                               "test": [{"input": [[1, 3]], "output": test_output}]}, "t")

    first_only = observations(task([[9, 9]]), [0])
    assert first_only[1] == "Colour changes from input to output, over all examples: every cell of colour 1 becomes 2 (2 cells)."
    both = observations(task([[9, 9]]), [0, 1])
    assert both[1].endswith(": 2 cells of colour 1 become 2; 1 cell of colour 1 becomes 4.") and both[2] == "1 cell keeps its colour."
    assert observations(task([[0, 0]]), [0, 1]) == both


def test_the_prompt_states_them_only_when_asked(arc_task):
    task = arc_task("c8f0f002")
    plain = build_first_prompt(task, max_prompt_tokens=BIG, count_tokens=chars_div_4_token_count, code_only=True)
    told = build_first_prompt(task, max_prompt_tokens=BIG, count_tokens=chars_div_4_token_count, code_only=True, observations=True)
    assert "What the examples show" not in text_of(plain)
    text = text_of(told)
    block = text.index("What the examples show (counted from the grids):")
    assert text.index("## Test input") < block < text.index("Answer with the program only")
    assert "- Colour changes from input to output, over all examples: every cell of colour 7 becomes 5" in text
    # Everything else is the prompt as before.
    assert text_of(plain) == text[:block] + text[text.index("Answer with the program only"):]
