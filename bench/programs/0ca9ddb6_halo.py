from common import *

import numpy as np
from typing import *

# concepts:
# patterns around points
# description:
# Red cells get yellow diagonal neighbours, blue cells orange orthogonal neighbours.

def transform(input_grid):
    output_grid = input_grid.copy()
    n, m = input_grid.shape
    for x, y in np.argwhere(input_grid != Color.BLACK):
        if input_grid[x, y] == Color.RED:
            offsets, color = [(-1, -1), (-1, 1), (1, -1), (1, 1)], Color.YELLOW
        elif input_grid[x, y] == Color.BLUE:
            offsets, color = [(-1, 0), (1, 0), (0, -1), (0, 1)], Color.ORANGE
        else:
            continue
        for dx, dy in offsets:
            if 0 <= x + dx < n and 0 <= y + dy < m and output_grid[x + dx, y + dy] == Color.BLACK:
                output_grid[x + dx, y + dy] = color
    return output_grid
