from common import *

import numpy as np
from typing import *

# concepts:
# objects, corners
# description:
# Each grey 2x2 square gets a mark just outside each of its four corners, diagonally: blue before its
# first cell, red and green at the two side corners, yellow after its last cell.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    for square in detect_objects(input_grid, connectivity=4, monochromatic=True, colors=[Color.GREY]):
        x, y, w, h = bounding_box(square)
        output_grid[x - 1, y - 1] = Color.BLUE
        output_grid[x - 1, y + h] = Color.RED
        output_grid[x + w, y - 1] = Color.GREEN
        output_grid[x + w, y + h] = Color.YELLOW
    return output_grid
