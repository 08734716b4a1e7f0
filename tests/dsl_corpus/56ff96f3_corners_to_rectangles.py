from common import *

import numpy as np
from typing import *

# concepts:
# rectangles from corners
# description:
# Each colour appears as two pixels, opposite corners of a rectangle. Fill the rectangle with that colour.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    for color in object_colors(input_grid, background=Color.BLACK):
        xs, ys = np.where(input_grid == color)
        output_grid[xs.min():xs.max() + 1, ys.min():ys.max() + 1] = color
    return output_grid
