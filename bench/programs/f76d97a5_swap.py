from common import *

import numpy as np
from typing import *

# concepts:
# color swap
# description:
# Gray becomes the other colour, the other colour becomes black.

def transform(input_grid):
    other = [c for c in object_colors(input_grid, background=Color.BLACK) if c != Color.GRAY][0]
    output_grid = np.zeros_like(input_grid)
    output_grid[input_grid == Color.GRAY] = other
    return output_grid
