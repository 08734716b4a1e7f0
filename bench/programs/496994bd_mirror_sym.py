from common import *

import numpy as np
from typing import *

# concepts:
# symmetry completion
# description:
# Complete the mirror symmetry of the pattern.

def transform(input_grid):
    output_grid = input_grid.copy()
    n = input_grid.shape[0]
    for x in range(n):
        for y in range(input_grid.shape[1]):
            if input_grid[x, y] != Color.BLACK:
                output_grid[n - 1 - x, y] = input_grid[x, y]
    return output_grid
