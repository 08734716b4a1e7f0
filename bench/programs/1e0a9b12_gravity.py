from common import *

import numpy as np
from typing import *

# concepts:
# gravity
# description:
# Every coloured cell falls to the bottom of its column.

def transform(input_grid):
    n, m = input_grid.shape
    output_grid = np.zeros_like(input_grid)
    for y in range(m):
        column = [c for c in input_grid[:, y] if c != Color.BLACK]
        for i, c in enumerate(reversed(column)):
            output_grid[n - 1 - i, y] = c
    return output_grid
