from common import *

import numpy as np
from typing import *

# concepts:
# line drawing, path between two points
# description:
# In the input there is one teal and one red pixel. Draw a yellow path from the teal pixel:
# first along its column down (or up) to the red pixel's row, then along that row to the red pixel.

def transform(input_grid):
    output_grid = input_grid.copy()
    x, y = np.where(input_grid == Color.TEAL)
    teal_x, teal_y = x[0], y[0]
    x, y = np.where(input_grid == Color.RED)
    red_x, red_y = x[0], y[0]

    corner_x, corner_y = red_x, teal_y
    draw_line(output_grid, teal_x, teal_y, end_x=corner_x, end_y=corner_y, color=Color.YELLOW)
    draw_line(output_grid, corner_x, corner_y, end_x=red_x, end_y=red_y, color=Color.YELLOW)

    output_grid[teal_x, teal_y] = Color.TEAL
    output_grid[red_x, red_y] = Color.RED
    return output_grid
