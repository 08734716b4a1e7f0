from common import *

import numpy as np
from typing import *

# concepts:
# lines, tiling
# description:
# Every column that holds a pixel gets teal in all its empty cells; the result is tiled 2x2.

def transform(input_grid):
    grid = np.copy(input_grid)
    n, m = grid.shape
    for x, y in np.argwhere(input_grid != Color.BLACK):
        draw_line(grid, 0, y, length=n, direction=(1, 0), color=Color.TEAL)
    grid[input_grid != Color.BLACK] = input_grid[input_grid != Color.BLACK]
    return np.tile(grid, (2, 2))
