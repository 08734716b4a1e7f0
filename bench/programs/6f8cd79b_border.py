from common import *

import numpy as np
from typing import *

# concepts:
# borders
# description:
# Draw a teal border around the grid.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    output_grid[0, :] = output_grid[-1, :] = Color.TEAL
    output_grid[:, 0] = output_grid[:, -1] = Color.TEAL
    return output_grid
