from common import *

import numpy as np
from typing import *

# concepts:
# color mapping
# description:
# Map each colour to its partner: green<->yellow, blue<->gray, red<->pink, teal<->maroon.

def transform(input_grid):
    mapping = {Color.GREEN: Color.YELLOW, Color.YELLOW: Color.GREEN, Color.BLUE: Color.GRAY, Color.GRAY: Color.BLUE,
               Color.RED: Color.PINK, Color.PINK: Color.RED, Color.TEAL: Color.MAROON, Color.MAROON: Color.TEAL}
    output_grid = input_grid.copy()
    for x in range(input_grid.shape[0]):
        for y in range(input_grid.shape[1]):
            output_grid[x, y] = mapping.get(input_grid[x, y], input_grid[x, y])
    return output_grid
