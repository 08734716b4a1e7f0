from common import *

import numpy as np
from typing import *

# concepts:
# diagonal lines
# description:
# A single pixel shoots diagonal lines of its own colour in all four diagonal directions.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    for x, y in np.argwhere(input_grid != Color.BLACK):
        color = input_grid[x, y]
        for direction in [(1, 1), (1, -1), (-1, 1), (-1, -1)]:
            draw_line(output_grid, x, y, direction=direction, color=color)
    return output_grid
