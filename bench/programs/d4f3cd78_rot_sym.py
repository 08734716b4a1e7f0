from common import *

import numpy as np
from typing import *

# concepts:
# symmetry detection
# description:
# Detect the rotational symmetry and fill its orbit with teal.

def transform(input_grid):
    output_grid = input_grid.copy()
    sym = detect_rotational_symmetry(input_grid, ignore_colors=[Color.BLACK])
    if sym is None:
        return output_grid
    for x, y in np.argwhere(input_grid == Color.GRAY):
        for ox, oy in orbit(input_grid, x, y, [sym]):
            if output_grid[ox, oy] == Color.BLACK:
                output_grid[ox, oy] = Color.TEAL
    return output_grid
