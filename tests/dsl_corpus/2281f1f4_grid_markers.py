from common import *

import numpy as np
from typing import *

# concepts:
# alignment, intersection
# description:
# Grey markers sit along the top edge and along the right edge. Every cell that lies in the column of a
# top marker and the row of a right marker becomes red.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    n, m = input_grid.shape
    top_columns = [y for x, y in np.argwhere(input_grid == Color.GREY) if x == 0]
    right_rows = [x for x, y in np.argwhere(input_grid == Color.GREY) if y == m - 1]
    for x in right_rows:
        for y in top_columns:
            if output_grid[x, y] == Color.BLACK:
                output_grid[x, y] = Color.RED
    return output_grid
