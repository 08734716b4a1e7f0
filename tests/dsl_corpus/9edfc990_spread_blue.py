from common import *

import numpy as np
from typing import *

# concepts:
# flood fill, contact
# description:
# Every black region (4-connected) that touches a blue pixel is filled with blue.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    n, m = input_grid.shape
    for x, y in np.argwhere(input_grid == Color.BLUE):
        for dx, dy in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
            nx, ny = x + dx, y + dy
            if 0 <= nx < n and 0 <= ny < m and output_grid[nx, ny] == Color.BLACK:
                flood_fill(output_grid, nx, ny, Color.BLUE, connectivity=4)
    return output_grid
