"""ARC grids: strict parsing from JSON, conversion back, fingerprints.

A grid is a 2-D int numpy array with sides 1..30 and values 0..9; x is axis 0 (the
row index of the JSON grid).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

MAX_SIDE = 30
GRID_DTYPE = np.int64


class GridError(ValueError):
    """A value that is not a valid ARC grid; the message says where and why."""


def grid_from_json(value: Any, where: str = "grid") -> np.ndarray:
    """Parse a JSON list of lists of ints 0..9 (sides 1..30) strictly.

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
                raise GridError(f"{where}: cell [{i}][{j}] is {cell!r}, expected an integer 0..9")
            if not 0 <= cell <= 9:
                raise GridError(f"{where}: cell [{i}][{j}] is {cell}, outside 0..9")
    return np.array(value, dtype=GRID_DTYPE)


def grid_to_json(grid: np.ndarray) -> list[list[int]]:
    return [[int(v) for v in row] for row in np.asarray(grid)]


def is_valid_grid(grid: Any) -> bool:
    """A 2-D integer array with sides 1..30 and values 0..9."""
    if not isinstance(grid, np.ndarray) or grid.ndim != 2:
        return False
    if not (1 <= grid.shape[0] <= MAX_SIDE and 1 <= grid.shape[1] <= MAX_SIDE):
        return False
    if not np.issubdtype(grid.dtype, np.integer):
        return False
    return bool(grid.min() >= 0 and grid.max() <= 9)


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
