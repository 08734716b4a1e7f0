from common import *

import numpy as np
from typing import *

# concepts:
# lines, intersection
# description:
# There are two pixels, one teal and one orange. Each shoots lines in its colour in all four
# directions across the grid. Where the teal lines cross the orange lines, the cell becomes red.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    points = {}
    for color in [Color.TEAL, Color.ORANGE]:
        x, y = np.argwhere(input_grid == color)[0]
        points[color] = (x, y)
        for direction in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
            draw_line(output_grid, x, y, direction=direction, color=color)

    (teal_x, teal_y), (orange_x, orange_y) = points[Color.TEAL], points[Color.ORANGE]
    output_grid[teal_x, orange_y] = Color.RED
    output_grid[orange_x, teal_y] = Color.RED
    return output_grid
