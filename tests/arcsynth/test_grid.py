from __future__ import annotations

import numpy as np
import pytest

from arcsynth.grid import PALETTE, GridError, grid_to_list, grids_equal, parse_grid, shape_str


def test_parse_grid_returns_contiguous_uint8_with_the_values():
    g = parse_grid([[0, 9, 3], [4, 5, 6]])
    assert g.dtype == np.uint8 and g.flags.c_contiguous
    assert g.shape == (2, 3)
    assert grid_to_list(g) == [[0, 9, 3], [4, 5, 6]]


def test_parse_grid_accepts_integer_arrays_and_numpy_scalars():
    assert parse_grid(np.array([[1, 2]], dtype=np.int64)).tolist() == [[1, 2]]
    assert parse_grid([[np.int64(7), np.uint8(8)]]).tolist() == [[7, 8]]


@pytest.mark.parametrize(
    "value, reason",
    [
        ([], "no rows"),
        ("0123", "list of rows"),
        ([[1, 2], [3]], "not rectangular"),
        ([[1, 2], 3], "row 1"),
        ([[1, 2.0]], "cell (0,1) is float"),
        ([[1, True]], "cell (0,1) is bool"),
        ([[1], ["2"]], "cell (1,0) is str"),
        ([[None]], "cell (0,0) is NoneType"),
        ([[10]], "cell value 10"),
        ([[-1]], "cell value -1"),
        ([[0] * 31], "1x31"),
        ([[0]] * 31, "31x1"),
        ([[]], "1x0"),
        (np.zeros((2, 2, 2), dtype=int), "3 dimension"),
        (np.zeros((2, 2), dtype=float), "dtype float64"),
        (np.zeros((2, 2), dtype=bool), "dtype bool"),
    ],
)
def test_parse_grid_rejects_invalid_grids_with_the_reason(value, reason):
    with pytest.raises(GridError) as exc:
        parse_grid(value)
    assert reason in str(exc.value)


def test_parse_grid_accepts_the_size_limits():
    assert parse_grid([[0] * 30] * 30).shape == (30, 30)
    assert parse_grid([[3]]).shape == (1, 1)


def test_grids_equal_requires_same_shape_and_values():
    a = parse_grid([[1, 2], [3, 4]])
    assert grids_equal(a, parse_grid([[1, 2], [3, 4]]))
    assert not grids_equal(a, parse_grid([[1, 2], [3, 5]]))
    assert not grids_equal(parse_grid([[1, 1]]), parse_grid([[1], [1]]))
    assert not grids_equal(a, None) and not grids_equal(None, a)


def test_shape_str_is_height_by_width():
    assert shape_str(parse_grid([[1, 2, 3]])) == "1x3"


def test_palette_is_the_official_arc_palette():
    assert PALETTE == (
        "#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
        "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25",
    )
