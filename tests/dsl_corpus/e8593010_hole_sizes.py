from common import *

import numpy as np
from typing import *

# concepts:
# connected components, counting
# description:
# The canvas is grey with black holes. Holes of one cell become green, of two cells red, of three cells blue.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    color_by_size = {1: Color.GREEN, 2: Color.RED, 3: Color.BLUE}
    holes = find_connected_components(input_grid, background=Color.GREY, connectivity=4, monochromatic=True)
    for hole in holes:
        mask = hole == Color.BLACK
        output_grid[mask] = color_by_size[mask.sum()]
    return output_grid
