from common import *

import numpy as np
from typing import *

# concepts:
# hollow shapes, interior, size-based colouring
# description:
# Grey hollow squares: the hole is filled by its size, one cell pink, 2x2 orange, 3x3 teal.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    color_by_area = {1: Color.PINK, 4: Color.ORANGE, 9: Color.TEAL}
    for obj in find_connected_components(input_grid, background=Color.BLACK, connectivity=4):
        hole = object_interior(obj, background=Color.BLACK) & (obj == Color.BLACK)
        if not hole.any():
            continue
        x, y = np.argwhere(hole)[0]
        flood_fill(output_grid, x, y, color_by_area[hole.sum()], connectivity=4)
    return output_grid
