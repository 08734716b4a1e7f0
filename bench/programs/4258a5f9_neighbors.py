from common import *

import numpy as np
from typing import *

# concepts:
# neighbours, halo
# description:
# Surround every gray cell with blue.

def transform(input_grid):
    output_grid = input_grid.copy()
    halo = object_neighbors(input_grid, background=Color.BLACK, connectivity=8)
    output_grid[halo] = Color.BLUE
    return output_grid
