from common import *

import numpy as np
from typing import *

# concepts:
# pixel expansion, sprites
# description:
# Every grey pixel becomes a 3x3 blue square centred on it.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    square = np.full((3, 3), Color.BLUE)
    for x, y in np.argwhere(input_grid == Color.GREY):
        blit_sprite(output_grid, square, x - 1, y - 1)
    return output_grid
