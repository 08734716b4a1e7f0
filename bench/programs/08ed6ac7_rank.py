from common import *

import numpy as np
from typing import *

# concepts:
# sorting, color by rank
# description:
# Bars are coloured by height rank: tallest blue, then red, green, yellow.

def transform(input_grid):
    bars = find_connected_components(input_grid, background=Color.BLACK, connectivity=4)
    bars.sort(key=lambda bar: -bounding_box(bar)[2])
    output_grid = np.zeros_like(input_grid)
    for bar, color in zip(bars, [Color.BLUE, Color.RED, Color.GREEN, Color.YELLOW]):
        output_grid[bar != Color.BLACK] = color
    return output_grid
