from common import *

import numpy as np
from typing import *

# concepts:
# diagonal lines, objects
# description:
# A 2x2 block has pixels touching its corners diagonally. Each such pixel extends a diagonal line of the
# block's colour away from the block, to the edge of the grid.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    objects = find_connected_components(input_grid, background=Color.BLACK, connectivity=4)
    block = max(objects, key=lambda obj: np.sum(obj != Color.BLACK))
    cx, cy = object_position(block, anchor="center")
    for x, y in np.argwhere((input_grid != Color.BLACK) & (block == Color.BLACK)):
        direction = (np.sign(x - cx), np.sign(y - cy))
        draw_line(output_grid, x, y, direction=direction, color=input_grid[x, y])
    return output_grid
