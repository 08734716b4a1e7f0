from common import *

import numpy as np
from typing import *

# concepts:
# uniformity
# description:
# Rows of one colour become gray, other rows black.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    for x in range(input_grid.shape[0]):
        if len(set(input_grid[x, :])) == 1:
            output_grid[x, :] = Color.GRAY
    return output_grid
