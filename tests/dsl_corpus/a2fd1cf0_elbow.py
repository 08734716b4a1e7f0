from common import *

import numpy as np
from typing import *

# concepts:
# line drawing, path between two points
# description:
# In the input there is one red and one green pixel. Draw a teal path from the red pixel:
# first along the red pixel's row to the green pixel's column, then along that column to the green pixel.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    red_x, red_y = np.argwhere(input_grid == Color.RED)[0]
    green_x, green_y = np.argwhere(input_grid == Color.GREEN)[0]

    # horizontal leg, then the vertical leg from the corner
    draw_line(output_grid, red_x, red_y, end_x=red_x, end_y=green_y, color=Color.TEAL)
    draw_line(output_grid, red_x, green_y, end_x=green_x, end_y=green_y, color=Color.TEAL)

    # the endpoints keep their colours
    output_grid[red_x, red_y] = Color.RED
    output_grid[green_x, green_y] = Color.GREEN
    return output_grid
