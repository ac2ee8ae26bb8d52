from __future__ import annotations

import numpy as np
import pytest

from arcsynth.grid import GridError
from prompts.encodings import COLOUR_NAMES, COMPACT_ENCODING, ENCODINGS, UnknownEncoding, get_encoding

# Square and non-square, tiny and 30x30, several colours.
TASK_IDS = ("007bbfb7", "05f2a901", "3631a71a", "25ff71a9", "0a938d79")


def _real_grids(arc_task) -> list[np.ndarray]:
    grids = []
    for tid in TASK_IDS:
        t = arc_task(tid)
        for p in t.train + t.test:
            grids.append(p.input)
            if p.output is not None:
                grids.append(p.output)
    return grids


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_every_encoding_round_trips_real_grids(name, arc_task):
    enc = ENCODINGS[name]
    for grid in _real_grids(arc_task):
        back = enc.decode(enc.encode(grid))
        assert back.shape == grid.shape
        assert np.array_equal(back, grid)


def test_registry_has_the_four_named_encodings():
    assert set(ENCODINGS) == {"digits", "spaced", "numpy", "colors"}
    assert COMPACT_ENCODING in ENCODINGS


def test_digits_are_rows_without_separators():
    assert ENCODINGS["digits"].encode(np.array([[0, 0, 1, 2], [3, 4, 5, 9]])) == "0012\n3459"


def test_spaced_separates_cells_with_spaces():
    assert ENCODINGS["spaced"].encode(np.array([[0, 0, 1, 2], [3, 4, 5, 9]])) == "0 0 1 2\n3 4 5 9"


def test_numpy_encoding_is_valid_python_for_the_same_array():
    grid = np.array([[0, 7, 7], [7, 7, 7], [0, 7, 1]], dtype=np.uint8)
    text = ENCODINGS["numpy"].encode(grid)
    assert text.startswith("np.array([[0, 7, 7],")
    assert text.count("\n") == 2  # one row per line
    assert np.array_equal(eval(text, {"np": np}), grid)


def test_colour_words_follow_the_arc_palette_order():
    enc = ENCODINGS["colors"]
    assert enc.encode(np.array([list(range(10))])) == " ".join(
        ["black", "blue", "red", "green", "yellow", "gray", "magenta", "orange", "azure", "maroon"]
    )
    # The program works on integers, so the prompt must say which word is which.
    for i, name in enumerate(COLOUR_NAMES):
        assert f"{i}={name}" in enc.description


def test_compact_encoding_is_the_shortest_text(arc_task):
    for grid in _real_grids(arc_task):
        compact = len(ENCODINGS[COMPACT_ENCODING].encode(grid))
        assert all(compact <= len(e.encode(grid)) for e in ENCODINGS.values())


def test_unknown_encoding_names_the_choices():
    with pytest.raises(UnknownEncoding) as err:
        get_encoding("hex")
    assert "hex" in str(err.value) and "spaced" in str(err.value) and "colors" in str(err.value)


@pytest.mark.parametrize(
    "name,text",
    [("digits", "01\n0a"), ("spaced", "0 1\n0"), ("colors", "black purple"), ("numpy", "[[0, 1]]"), ("digits", "0\n12")],
)
def test_decode_rejects_text_that_is_not_a_grid(name, text):
    with pytest.raises((ValueError, GridError)):
        ENCODINGS[name].decode(text)


@pytest.mark.slow
def test_compact_encoding_needs_fewer_real_tokens(arc_task, smollm2_tokenizer):
    grid = arc_task("3631a71a").train[0].input  # 30x30
    tokens = {name: len(smollm2_tokenizer.tokenize(e.encode(grid))) for name, e in ENCODINGS.items()}
    assert tokens[COMPACT_ENCODING] == min(tokens.values())
    assert tokens[COMPACT_ENCODING] < tokens["spaced"]


def test_a_grid_is_encoded_once_and_its_text_reused_by_cells():
    from prompts import encodings

    spaced = get_encoding("spaced")
    calls = []
    counted = encodings.Encoding(spaced.name, spaced.description, spaced.cells,
                                 lambda rows: calls.append(rows) or spaced._encode(rows), spaced._decode)
    a = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    assert counted.encode(a) == "1 2\n3 4" and len(calls) == 1
    assert counted.encode(a.copy()) == "1 2\n3 4" and len(calls) == 1  # same cells, another array
    assert counted.encode(np.array([[1, 2, 3, 4]], dtype=np.uint8)) == "1 2 3 4" and len(calls) == 2  # same bytes, other shape
    assert counted.encode(np.array([[4, 3], [2, 1]], dtype=np.uint8)) == "4 3\n2 1" and len(calls) == 3
    assert get_encoding("digits").encode(a) == "12\n34"  # each encoding its own text
