from common import *

import numpy as np
from typing import *

# concepts:
# hollow boxes, interior
# description:
# Red box outlines are erased and their holes are filled with green. Solid red blocks just disappear.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    for box in find_connected_components(input_grid, background=Color.BLACK, connectivity=4):
        hole = object_interior(box) & (box == Color.BLACK)
        output_grid[hole] = Color.GREEN
    return output_grid
