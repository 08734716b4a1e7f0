from common import *

import numpy as np
from typing import *

# concepts:
# lines, layering
# description:
# Red pixels become full vertical lines (along axis 0). Green and blue pixels become full horizontal
# lines (along axis 1), drawn on top of the red ones.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    n, m = input_grid.shape
    for x, y in np.argwhere(input_grid == Color.RED):
        draw_line(output_grid, 0, y, direction=(1, 0), color=Color.RED)
    for color in [Color.GREEN, Color.BLUE]:
        for x, y in np.argwhere(input_grid == color):
            draw_line(output_grid, x, 0, end_x=x, end_y=m - 1, color=color)
    return output_grid
