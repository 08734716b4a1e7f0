from common import *

import numpy as np
from typing import *

# concepts:
# repetition, patterns
# description:
# Each pixel in the top row grows downwards as a zigzag: on even rows under the pixel, on odd rows one
# cell to either side.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    n, m = input_grid.shape
    for y in np.nonzero(input_grid[0])[0]:
        color = input_grid[0, y]
        for x in range(n):
            if x % 2 == 0:
                output_grid[x, y] = color
            else:
                for side in (y - 1, y + 1):
                    if 0 <= side < m:
                        output_grid[x, side] = color
    return output_grid
