from common import *

import numpy as np
from typing import *

# concepts:
# translation, recolouring
# description:
# The teal shape moves one cell down (along axis 0) and turns red.

def transform(input_grid):
    n, m = input_grid.shape
    step = np.int64(1)
    moved = translate(input_grid, step, 0, background=Color.BLACK)
    output_grid = np.zeros((n, m), dtype=int)
    output_grid[moved == Color.TEAL] = Color.RED
    return output_grid
