from common import *

import numpy as np
from typing import *

# concepts:
# topology, flood fill
# description:
# Blue lines divide the black canvas. Black cells that can reach the border through black become green;
# black cells enclosed by the lines become red.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    n, m = output_grid.shape
    border = np.zeros((n, m), dtype=bool)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    for x, y in np.argwhere(border & (input_grid == Color.BLACK)):
        if output_grid[x, y] == Color.BLACK:
            flood_fill(output_grid, x, y, Color.GREEN, connectivity=4)
    output_grid[output_grid == Color.BLACK] = Color.RED
    return output_grid
