from common import *

import numpy as np
from typing import *

# concepts:
# objects, counting, color by size
# description:
# Gray objects are recoloured by size: 4 cells blue, 3 red, 2 green.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    colors = {4: Color.BLUE, 3: Color.RED, 2: Color.GREEN}
    for obj in find_connected_components(input_grid, background=Color.BLACK, connectivity=4):
        size = np.sum(obj != Color.BLACK)
        output_grid[obj != Color.BLACK] = colors.get(size, Color.GRAY)
    return output_grid
