from common import *

import numpy as np
from typing import *

# concepts:
# objects, sorting
# description:
# The tallest bar becomes blue, the shortest red, the others disappear.

def transform(input_grid):
    bars = find_connected_components(input_grid, background=Color.BLACK, connectivity=4)
    heights = [bounding_box(bar)[2] for bar in bars]
    output_grid = np.zeros_like(input_grid)
    output_grid[bars[int(np.argmax(heights))] != Color.BLACK] = Color.BLUE
    output_grid[bars[int(np.argmin(heights))] != Color.BLACK] = Color.RED
    return output_grid
