from common import *

import numpy as np
from typing import *

# concepts:
# sprites at offsets, clipping at the border
# description:
# A red pixel is replaced by four coloured diagonal neighbours: green, pink, teal, orange.
# Those that fall outside the grid are lost.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    stamp = np.array([[Color.GREEN, Color.BLACK, Color.PINK],
                      [Color.BLACK, Color.BLACK, Color.BLACK],
                      [Color.TEAL, Color.BLACK, Color.ORANGE]])
    for x, y in np.argwhere(input_grid == Color.RED):
        blit_sprite(output_grid, stamp, x - 1, y - 1)
    return output_grid
