from common import *

import numpy as np
from typing import *

# concepts:
# matching, lines
# description:
# Pixels sit at both ends of some rows. Where the two ends of a row have the same colour, the whole row is
# filled with it.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    n, m = input_grid.shape
    for x in range(n):
        left, right = input_grid[x, 0], input_grid[x, m - 1]
        if left != Color.BLACK and left == right:
            draw_line(output_grid, x, 0, end_x=x, end_y=m - 1, color=left)
    return output_grid
