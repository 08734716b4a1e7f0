from common import *

import numpy as np
from typing import *

# concepts:
# line drawing
# description:
# Draw a red diagonal from the top right to the bottom left and a yellow bottom row.

def transform(input_grid):
    output_grid = input_grid.copy()
    n, m = input_grid.shape
    draw_line(output_grid, 0, m - 1, direction=(1, -1), color=Color.RED, stop_at_color=Color.NOT_BLACK)
    output_grid[n - 1, 1:] = Color.YELLOW
    return output_grid
