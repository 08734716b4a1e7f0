from common import *

import numpy as np
from typing import *

# concepts:
# propagation
# description:
# Every coloured cell extends downwards to the bottom.

def transform(input_grid):
    output_grid = input_grid.copy()
    for x, y in np.argwhere(input_grid != Color.BLACK):
        draw_line(output_grid, x, y, direction=(1, 0), color=input_grid[x, y])
    return output_grid
