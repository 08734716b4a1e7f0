"""ARC grids: the limits, strict parsing from JSON, conversion back, fingerprints.

A grid is a 2-D int numpy array with sides 1..MAX_SIDE (30) and values 0..MAX_COLOR (9); x is
axis 0 (the row index of the JSON grid). `MAX_SIDE`, `MAX_COLOR` and `shape_ok` are the one
definition of those limits: task files, submissions, the executor's child and the worker's check of
what the child sent all use them (the child too: this module imports only hashlib and numpy, which
its worker has loaded before it forks).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

MAX_SIDE = 30  # rows and columns: 1..MAX_SIDE
MAX_COLOR = 9  # cell values: 0..MAX_COLOR
GRID_DTYPE = np.int64


class GridError(ValueError):
    """A value that is not a valid ARC grid; the message says where and why."""


def grid_from_json(value: Any, where: str = "grid") -> np.ndarray:
    """Parse a JSON list of lists of ints 0..MAX_COLOR (sides 1..MAX_SIDE) strictly.

    `where` names the place in error messages, e.g. "train[2].input".
    """
    if not isinstance(value, list) or not value:
        raise GridError(f"{where}: expected a non-empty list of rows, got {_describe(value)}")
    if len(value) > MAX_SIDE:
        raise GridError(f"{where}: {len(value)} rows, at most {MAX_SIDE} allowed")
    width = None
    for i, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise GridError(f"{where}: row {i} is {_describe(row)}, expected a non-empty list")
        if width is None:
            width = len(row)
            if width > MAX_SIDE:
                raise GridError(f"{where}: row {i} has {width} cells, at most {MAX_SIDE} allowed")
        elif len(row) != width:
            raise GridError(f"{where}: ragged rows: row 0 has {width} cells, row {i} has {len(row)}")
        for j, cell in enumerate(row):
            # bool is an int subclass in Python; JSON true/false is not a colour
            if type(cell) is not int:
                raise GridError(f"{where}: cell [{i}][{j}] is {cell!r}, expected an integer 0..{MAX_COLOR}")
            if not 0 <= cell <= MAX_COLOR:
                raise GridError(f"{where}: cell [{i}][{j}] is {cell}, outside 0..{MAX_COLOR}")
    return np.array(value, dtype=GRID_DTYPE)


def grid_to_json(grid: np.ndarray) -> list[list[int]]:
    return [[int(v) for v in row] for row in np.asarray(grid)]


def shape_ok(shape: Sequence[int]) -> bool:
    """Two sides, each 1..MAX_SIDE."""
    return len(shape) == 2 and 1 <= shape[0] <= MAX_SIDE and 1 <= shape[1] <= MAX_SIDE


def is_valid_grid(grid: Any) -> bool:
    """A 2-D integer array with sides 1..MAX_SIDE and values 0..MAX_COLOR."""
    if not isinstance(grid, np.ndarray) or not shape_ok(grid.shape):
        return False
    if not np.issubdtype(grid.dtype, np.integer):
        return False
    return bool(grid.min() >= 0 and grid.max() <= MAX_COLOR)


def fingerprint(grid: np.ndarray) -> str:
    """A short stable hash of shape and contents, for grouping identical outputs."""
    arr = np.ascontiguousarray(grid, dtype=np.int8)
    digest = hashlib.blake2b(arr.tobytes(), digest_size=8, person=b"arc25grid")
    digest.update(repr(arr.shape).encode())
    return digest.hexdigest()


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    return f"{type(value).__name__} {value!r}"[:60]
