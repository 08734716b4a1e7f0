from common import *

import numpy as np
from typing import *

# concepts:
# halos, sprites at offsets
# description:
# Every red pixel is surrounded by a ring of blue cells (its eight neighbours); other pixels stay.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    halo = np.full((3, 3), Color.BLUE)
    halo[1, 1] = Color.RED
    for x, y in np.argwhere(input_grid == Color.RED):
        blit_sprite(output_grid, halo, x - 1, y - 1)
    return output_grid
