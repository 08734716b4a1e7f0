from common import *

import numpy as np
from typing import *

# concepts:
# topology, filling
# description:
# Fill the black cells enclosed by green with yellow.

def transform(input_grid):
    output_grid = input_grid.copy()
    interior = object_interior(input_grid, background=Color.BLACK)
    output_grid[interior & (input_grid == Color.BLACK)] = Color.YELLOW
    return output_grid
