from common import *

import numpy as np
from typing import *

# concepts:
# lines, attraction and repulsion
# description:
# A grey wall crosses the grid. Red pixels grow towards the wall until they touch it;
# blue pixels grow away from the wall to the edge of the grid.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    n, m = input_grid.shape
    grey_x, grey_y = np.where(input_grid == Color.GREY)
    horizontal_wall = len(set(grey_x)) == 1
    wall = grey_x[0] if horizontal_wall else grey_y[0]

    for x, y in np.argwhere((input_grid == Color.RED) | (input_grid == Color.BLUE)):
        color = input_grid[x, y]
        toward = np.sign(wall - x) if horizontal_wall else np.sign(wall - y)
        step = toward if color == Color.RED else -toward
        direction = (step, 0) if horizontal_wall else (0, step)
        draw_line(output_grid, x, y, direction=direction, color=color, stop_at_color=[Color.GREY])
    return output_grid
