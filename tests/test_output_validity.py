"""What a program may return, as the contract says (barc-induction-format.md, section 3).

Valid: 2-D, each side 1..30, every value an integer 0..9; array-likes of ints and
whole floats are coerced. Everything else is `invalid_output` with its reason, and
is never scored as correct. One table: each row is a `transform` body's return
expression, checked both by `coerce_output` directly and by real programs in the
sandboxed executor (the path every model-written program takes).
"""

from __future__ import annotations

import numpy as np
import pytest

from arc25.exec_child import coerce_output
from arc25.execution import ErrorKind, execute_on_task
from arc25.metrics import score_prediction
from arc25.tasks import Example, Task

GRID = np.array([[0, 1, 2], [3, 0, 5]])  # what `input_grid` is in every row
HUGE = 10**30

# (row name, return expression of `input_grid`, the coerced grid or the exact reason it is invalid)
TABLE = [
    # coerced
    ("int64 array", "input_grid", GRID.tolist()),
    ("list of lists of ints", "input_grid.tolist()", GRID.tolist()),
    ("tuple of tuples", "((5,),)", [[5]]),
    ("numpy ints in lists", "[[np.int64(1), np.int32(2)]]", [[1, 2]]),
    ("list of 1-D arrays", "[row for row in input_grid]", GRID.tolist()),
    ("uint8 array", "input_grid.astype(np.uint8)", GRID.tolist()),
    ("integral floats", "input_grid.astype(float)", GRID.tolist()),
    ("integral float lists", "[[1.0, 2.0]]", [[1, 2]]),
    ("negative zero", "np.array([[-0.0, 1.0]])", [[0, 1]]),
    ("ints and bools mixed (numpy makes ints)", "[[True, 2], [3, 4]]", [[1, 2], [3, 4]]),
    ("1x1", "[[9]]", [[9]]),
    ("30x30", "np.full((30, 30), 7)", [[7] * 30] * 30),
    ("1x30", "np.zeros((1, 30), dtype=int)", [[0] * 30]),
    # invalid: not an array at all
    ("None", "None", "transform returned None"),
    ("no return", "print('forgot to return')", "transform returned None"),
    ("string", "'abc'", "transform returned a str, not a grid"),
    ("bytes", "b'012'", "transform returned a bytes, not a grid"),
    ("int", "3", "transform returned a scalar (int), not a grid"),
    ("bool", "True", "transform returned a scalar (bool), not a grid"),
    ("float", "2.0", "transform returned a scalar (float), not a grid"),
    ("numpy scalar", "input_grid.max()", "transform returned a scalar (int64), not a grid"),
    ("numpy bool scalar", "input_grid.any()", "transform returned a scalar (bool), not a grid"),
    ("dict", "{'grid': input_grid}", "transform returned a dict, not a grid"),
    ("set", "{1, 2}", "transform returned a set, not a grid"),
    ("function", "len", "transform returned a builtin_function_or_method, not a grid"),
    # invalid: shape
    ("0-D array", "np.array(5)", "0-D array of shape (), not a 2-D grid"),
    ("1-D array", "input_grid[0]", "1-D array of shape (3,), not a 2-D grid"),
    ("flat list", "[1, 2, 3]", "1-D array of shape (3,), not a 2-D grid"),
    ("3-D array", "np.stack([input_grid, input_grid])", "3-D array of shape (2, 2, 3), not a 2-D grid"),
    ("list of grids", "[input_grid]", "3-D array of shape (1, 2, 3), not a 2-D grid"),
    ("ragged rows", "[[1, 2], [3]]", "ragged rows (not all the same length)"),
    ("ragged arrays", "[input_grid[0], input_grid[1, :2]]", "ragged rows (not all the same length)"),
    ("row and a number", "[[1, 2], 3]", "ragged rows (not all the same length)"),
    ("empty list", "[]", "empty array of shape (0,)"),
    ("empty rows", "[[]]", "empty array of shape (1, 0)"),
    ("no rows", "np.zeros((0, 3), dtype=int)", "empty array of shape (0, 3)"),
    ("31 rows", "np.zeros((31, 2), dtype=int)", "shape (31, 2) has a side outside 1..30"),
    ("31 columns", "np.zeros((1, 31), dtype=int)", "shape (1, 31) has a side outside 1..30"),
    # invalid: cell type
    ("bool mask", "input_grid != 0", "bool array (a mask), not a grid of colours"),
    ("bool mask of a DSL call", "input_grid == Color.BLACK", "bool array (a mask), not a grid of colours"),
    ("lists of bools", "[[True, False], [False, True]]", "bool array (a mask), not a grid of colours"),
    ("object array of ints", "np.array([[1, 2]], dtype=object)", "object array of shape (1, 2), not a grid of integers"),
    ("None cell", "[[1, None]]", "object array of shape (1, 2), not a grid of integers"),
    ("int too big for int64", f"[[{HUGE}]]", "object array of shape (1, 1), not a grid of integers"),
    ("floats with a fraction", "input_grid / 2", "float values with a fraction (e.g. 0.5)"),
    ("one fractional float", "[[1.0, 2.25]]", "float values with a fraction (e.g. 2.25)"),
    ("nan", "np.full((2, 2), np.nan)", "non-finite float values (nan or inf)"),
    ("inf", "[[1.0, float('inf')]]", "non-finite float values (nan or inf)"),
    ("digit strings", "[['1', '2']]", "cells of dtype <U1 are not integers"),
    ("complex", "input_grid + 0j", "cells of dtype complex128 are not integers"),
    # invalid: values
    ("value 10", "input_grid + 5", "values outside 0..9 (min 5, max 10)"),
    ("value -1", "input_grid - 1", "values outside 0..9 (min -1, max 4)"),
    ("float value 10", "input_grid * 2.0", "values outside 0..9 (min 0, max 10)"),
    ("uint8 wrapped around", "(input_grid - 1).astype(np.uint8)", "values outside 0..9 (min 0, max 255)"),
    # invalid: converting raises
    ("__array__ raises", "type('Evil', (), {'__array__': lambda self, *a, **k: 1 // 0})()",
     "cannot convert to an array: ZeroDivisionError: integer division or modulo by zero"),
]
IDS = [name for name, _, _ in TABLE]


def program(expression: str) -> str:
    return f"from common import *\n\ndef transform(input_grid):\n    return {expression}\n"


@pytest.fixture(scope="module")
def executed(executor):
    """Every row as a real program, one batch through the session's sandboxed executor."""
    results = executor.run([(program(expr), [GRID]) for _, expr, _ in TABLE])
    return dict(zip(IDS, results))


@pytest.mark.parametrize("name, expression, expected", TABLE, ids=IDS)
def test_output_validity(executed, name, expression, expected):
    from arc25.dsl.common import Color

    value = eval(expression, {"np": np, "Color": Color, "input_grid": GRID.copy()})
    grid, why = coerce_output(value)
    result = executed[name]
    if isinstance(expected, list):  # coerced
        assert why is None and grid.dtype == np.int64 and grid.tolist() == expected
        assert result.ok and result.outputs[0].dtype == np.int64 and result.outputs[0].tolist() == expected
    else:
        assert grid is None and why == expected
        assert result.kind == ErrorKind.INVALID_OUTPUT and result.error == expected
        assert result.outputs == [None] and result.errors == [f"invalid_output: {expected}"]


def test_the_table_covers_every_class_the_contract_names():
    reasons = [expected for _, _, expected in TABLE if isinstance(expected, str)]
    for fragment in ("bool array", "object array", "transform returned a str", "transform returned None", "0-D",
                     "3-D", "ragged", "empty", "with a fraction", "outside 0..9", "outside 1..30"):
        assert any(fragment in reason for reason in reasons), fragment
    coerced = [expr for _, expr, expected in TABLE if isinstance(expected, list)]
    assert "input_grid.astype(float)" in coerced and "input_grid.tolist()" in coerced


def test_a_bool_mask_is_never_scored_as_correct(executor):
    # The target is exactly the 0/1 grid a bool mask would become if coerced: the
    # mask must still not pass, on train or on test.
    a, b, t = np.array([[0, 3], [4, 0]]), np.array([[5, 5, 0]]), np.array([[0], [7]])
    task = Task("mask", [Example(a, (a != 0).astype(int)), Example(b, (b != 0).astype(int))], [t],
                [(t != 0).astype(int)])
    mask = execute_on_task(executor, program("input_grid != 0"), task)
    metrics = score_prediction(task, mask)
    assert mask.kind == ErrorKind.INVALID_OUTPUT and mask.error == "bool array (a mask), not a grid of colours"
    assert not metrics.valid_outputs and not metrics.train_pass and metrics.correct_grids == 0.0
    assert metrics.test_pass is False and metrics.test_correct == [False]
    # the same program made valid with .astype(int) passes: the task itself is right
    ints = score_prediction(task, execute_on_task(executor, program("(input_grid != 0).astype(int)"), task))
    assert ints.train_pass and ints.test_pass
