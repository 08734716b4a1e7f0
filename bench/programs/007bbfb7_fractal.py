from common import *

import numpy as np
from typing import *

# concepts:
# fractal, repetition, scaling
# description:
# Each non-black cell of the input becomes a copy of the whole input; black cells become black blocks.

def transform(input_grid):
    n, m = input_grid.shape
    output_grid = np.zeros((n * n, m * m), dtype=int)
    for x in range(n):
        for y in range(m):
            if input_grid[x, y] != Color.BLACK:
                blit_sprite(output_grid, input_grid, x * n, y * m)
    return output_grid
