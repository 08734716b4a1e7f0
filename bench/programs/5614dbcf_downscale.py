from common import *

import numpy as np
from typing import *

# concepts:
# downscaling, denoising
# description:
# Each 3x3 block becomes one cell of its colour, ignoring gray noise.

def transform(input_grid):
    n, m = input_grid.shape
    output_grid = np.zeros((n // 3, m // 3), dtype=int)
    for x in range(n // 3):
        for y in range(m // 3):
            block = input_grid[3 * x:3 * x + 3, 3 * y:3 * y + 3].flatten()
            block = [c for c in block if c != Color.GRAY]
            output_grid[x, y] = max(set(block), key=block.count) if block else Color.BLACK
    return output_grid
