from common import *

import numpy as np
from typing import *

# concepts:
# lines, alignment, attraction
# description:
# There is a green 2x2 block and scattered coloured pixels. Each pixel in line with the block (same rows
# or same columns) extends a line of its colour towards the block until it touches it.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    green_x, green_y = np.where(input_grid == Color.GREEN)
    x_min, x_max, y_min, y_max = green_x.min(), green_x.max(), green_y.min(), green_y.max()

    for x, y in np.argwhere((input_grid != Color.BLACK) & (input_grid != Color.GREEN)):
        if y_min <= y <= y_max:
            direction = (np.sign(x_min - x), 0)
        elif x_min <= x <= x_max:
            direction = (0, np.sign(y_min - y))
        else:
            continue
        draw_line(output_grid, x, y, direction=direction, color=input_grid[x, y], stop_at_color=[Color.GREEN])
    return output_grid
