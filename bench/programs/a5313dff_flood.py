from common import *

import numpy as np
from typing import *

# concepts:
# topology, flood fill
# description:
# Black regions enclosed by red become blue: flood the outside from the border first.

def transform(input_grid):
    grid = input_grid.copy()
    n, m = grid.shape
    for x in range(n):
        for y in range(m):
            if (x in (0, n - 1) or y in (0, m - 1)) and grid[x, y] == Color.BLACK:
                flood_fill(grid, x, y, Color.TEAL, connectivity=4)
    grid[grid == Color.BLACK] = Color.BLUE
    grid[grid == Color.TEAL] = Color.BLACK
    return grid
