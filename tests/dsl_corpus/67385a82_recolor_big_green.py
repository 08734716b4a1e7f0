from common import *

import numpy as np
from typing import *

# concepts:
# connected components, size filter
# description:
# Green components of two or more cells turn teal; single green cells stay green.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    for obj in find_connected_components(input_grid, background=Color.BLACK, connectivity=4):
        if np.sum(obj == Color.GREEN) >= 2:
            output_grid[obj == Color.GREEN] = Color.TEAL
    return output_grid
